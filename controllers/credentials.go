/*
Copyright 2026 The dingtalk-token-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/credwatch"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/digest"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// credentials are the values read from a token's credentials Secret. Secret: never logged,
// never put in status, events or the target Secret.
type credentials struct {
	typ    v1alpha1.TokenType
	corpID string
	app    dingtalk.AppCredentials
	suite  dingtalk.SuiteCredentials
	// user holds the client id and secret, and the bootstrap values (AuthCode, RefreshToken) as the
	// credentials Secret has them; the grant actually used is chosen in user.go.
	user dingtalk.UserCredentials
}

// readCredentials reads what the pass needs of the credentials: their values, through the
// uncached API reader (the cache holds only the operator's own Secrets), the credential set's
// sharing key and its Retry-After floor. The values read are kept by the credentials watch for
// the Secret's resourceVersion: while it is unchanged, a pass of any object naming the Secret
// reuses them instead of reading it again. A missing Secret or key is a failure
// (CredentialsNotFound); an error is the API server's.
func (sh *Machinery) readCredentials(ctx context.Context, p *tokenPass) (credentialsRead, error) {
	c, missing, err := sh.credentialValues(ctx, p)
	if err != nil || missing != nil {
		return credentialsRead{missing: missing}, err
	}
	read := credentialsRead{values: c}
	if p.spec.TicketSource == v1alpha1.SuiteTicketSourceStream {
		// A ticket DingTalk pushed wins over the credentials Secret's (suiteticket.go).
		if read, err = sh.withPushedTicket(ctx, p, read); err != nil || read.missing != nil {
			return read, err
		}
	}
	read.setKey = sh.fetchKey(p.uid, read.values)
	read.floor = sh.fetcher.Floor(read.setKey)
	return read, nil
}

// credentialValues reads the values the spec's type needs: where the credentials watch holds them
// for the Secret's current resourceVersion (read by this or another object's pass), else from the
// API server. Missing values and values over credwatch.MaxValue are failures.
func (sh *Machinery) credentialValues(ctx context.Context, p *tokenPass) (*credentials, *failure, error) {
	key := p.spec.Credentials
	keys := readKeys(p.spec)
	data, ok := sh.credentials.Cached(key, keys)
	if !ok {
		s := &corev1.Secret{}
		if err := sh.apiReader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf("credentials Secret %q not found", key.Name)}, nil
			}
			return nil, nil, err
		}
		// Kept for this resourceVersion (oversized values only marked), so that the Secret is
		// not read again until it changes.
		data = sh.credentials.Remember(s, keys)
	}
	if f := oversizedCredential(key.Name, data, keys); f != nil {
		return nil, f, nil
	}
	specKeys := p.spec.Keys
	var missing []string
	value := func(key string, required bool) string {
		v := data.Keys[key]
		if v == "" && required {
			missing = append(missing, key)
		}
		return v
	}
	c := &credentials{typ: p.spec.Type, corpID: p.spec.CorpID}
	switch p.spec.Type {
	case v1alpha1.TokenTypeInternalApp:
		c.app = dingtalk.AppCredentials{AppKey: value(specKeys.AppKey, true), AppSecret: value(specKeys.AppSecret, true)}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		c.suite = dingtalk.SuiteCredentials{
			SuiteKey:    value(specKeys.SuiteKey, true),
			SuiteSecret: value(specKeys.SuiteSecret, true),
			// With Stream mode the ticket is pushed: one here only seeds the first fetch.
			SuiteTicket: value(specKeys.SuiteTicket, p.spec.TicketSource != v1alpha1.SuiteTicketSourceStream),
		}
	case v1alpha1.TokenTypeUser:
		// The bootstrap keys are optional here: once used, they may be removed from the Secret.
		c.user = dingtalk.UserCredentials{
			ClientID:     value(specKeys.ClientID, true),
			ClientSecret: value(specKeys.ClientSecret, true),
			AuthCode:     value(specKeys.AuthCode, false),
			RefreshToken: value(specKeys.RefreshToken, false),
		}
	default:
		return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf("unknown token type %q", p.spec.Type)}, nil
	}
	if len(missing) > 0 {
		return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf(
			"credentials Secret %q has no value for key(s) %s", key.Name, strings.Join(missing, ", "))}, nil
	}
	return c, nil, nil
}

// oversizedCredential refuses credentials in which a key the type reads holds more than
// credwatch.MaxValue bytes: CredentialsInvalid naming the Secret and the key, never the value.
func oversizedCredential(secret string, data credwatch.Values, keys []string) *failure {
	for _, k := range keys {
		if data.Oversized[k] {
			return oversizedValue("credentials Secret", secret, k)
		}
	}
	return nil
}

// oversizedValue is CredentialsInvalid for a value over the cap under key of a Secret (what names
// which: the credentials Secret, or one of the operator's own), never the value.
func oversizedValue(what, secret, key string) *failure {
	return &failure{reason: v1alpha1.ReasonCredentialsInvalid, message: fmt.Sprintf(
		"%s %q: key %q holds more than %d KiB, more than any DingTalk credential: refused before any call to DingTalk",
		what, secret, key, v1alpha1.MaxCredentialValueSize>>10)}
}

// readKeys are the credentials Secret's keys the spec's type reads.
func readKeys(spec tokenSpec) []string {
	k := spec.Keys
	switch spec.Type {
	case v1alpha1.TokenTypeInternalApp:
		return []string{k.AppKey, k.AppSecret}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		return []string{k.SuiteKey, k.SuiteSecret, k.SuiteTicket}
	default:
		return []string{k.ClientID, k.ClientSecret, k.AuthCode, k.RefreshToken}
	}
}

// fetchKey is the shared-fetch key of creds: the whole credential set and the endpoint. User
// tokens are never shared, so theirs includes the object's UID.
func (sh *Machinery) fetchKey(uid types.UID, creds *credentials) string {
	parts := creds.setParts(sh.endpoint)
	if !creds.shared() {
		parts = append(parts, string(uid))
	}
	return sh.fetcher.SetKey(parts...)
}

// values lists every credential value except the suite ticket, prefixed by the type and corpId.
func (c *credentials) values() []string {
	switch c.typ {
	case v1alpha1.TokenTypeInternalApp:
		return []string{string(c.typ), c.app.AppKey, c.app.AppSecret}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		return []string{string(c.typ), c.corpID, c.suite.SuiteKey, c.suite.SuiteSecret}
	default:
		return []string{string(c.typ), c.user.ClientID, c.user.ClientSecret, c.user.AuthCode, c.user.RefreshToken}
	}
}

// digest is status.credentialsDigest of object uid: every value but the suite ticket.
func (c *credentials) digest(d digest.Digester, uid types.UID) string {
	return d.Of(uid, c.values()...)
}

// ticketDigest is status.suiteTicketDigest ("" for types without a suite ticket).
func (c *credentials) ticketDigest(d digest.Digester, uid types.UID) string {
	if c.suite.SuiteTicket == "" {
		return ""
	}
	return d.Of(uid, "suiteTicket", c.suite.SuiteTicket)
}

// isDigest reports whether a stored credentials digest is that of c (earlier versions' digests
// included).
func (c *credentials) isDigest(d digest.Digester, stored string, uid types.UID) bool {
	return d.Matches(stored, uid, c.values()...)
}

// isTicketDigest reports whether a stored suite-ticket digest is that of c's ticket.
func (c *credentials) isTicketDigest(d digest.Digester, stored string, uid types.UID) bool {
	return c.suite.SuiteTicket != "" && d.Matches(stored, uid, "suiteTicket", c.suite.SuiteTicket)
}

// setParts is the full credential set that decides sharing: the type, every credential value
// (the suite ticket included), corpId and the endpoint.
func (c *credentials) setParts(endpoint string) []string {
	return append(c.values(), c.suite.SuiteTicket, endpoint)
}

// shared reports whether tokens of this type may be shared between objects: every type but
// User (a user token's refresh token rotates; two holders would fight).
func (c *credentials) shared() bool { return c.typ != v1alpha1.TokenTypeUser }
