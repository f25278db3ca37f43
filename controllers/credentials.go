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
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// maxCredentialValue is the largest credential value the operator accepts: no DingTalk key, secret,
// ticket, code or refresh token comes near it, and a larger one is refused (CredentialsInvalid)
// before it is copied, kept or sent anywhere.
const maxCredentialValue = 4 << 10

// credentials are the values read from a DingTalkToken's credentials Secret. Secret: never logged,
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
// sharing key and its Retry-After floor. The values read are kept in memory with the Secret's
// resourceVersion and the object's generation (they depend on the spec too: corpId and
// credentialsRef.keys): while both are unchanged, a pass reuses them instead of reading the
// Secret again. A missing Secret or key is a failure (CredentialsNotFound); an error is the
// API server's.
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
	read.floor = sh.fetcher.floor(read.setKey)
	return read, nil
}

func (sh *Machinery) credentialValues(ctx context.Context, p *tokenPass) (*credentials, *failure, error) {
	key := p.spec.Credentials
	if sh.credentials != nil {
		if memo := sh.memory.credentials(p.key, p.uid, p.generation, key.Name, sh.credentials.resourceVersion(key)); memo != nil {
			return memo.values, memo.invalid, nil
		}
	}
	s := &corev1.Secret{}
	if err := sh.apiReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf("credentials Secret %q not found", key.Name)}, nil
		}
		return nil, nil, err
	}
	if sh.credentials != nil {
		// The watch may not have seen this Secret yet (it was referenced after its last change).
		sh.credentials.observe(key, s.ResourceVersion)
	}
	// An oversized value is refused before it is copied; the refusal is remembered for this
	// resourceVersion, so that the Secret is not read again until it changes.
	if f := oversizedCredential(s, p.spec); f != nil {
		sh.memory.setCredentials(p.key, p.uid, p.generation, key.Name, s.ResourceVersion, credentialsMemo{invalid: f})
		return nil, f, nil
	}
	keys := p.spec.Keys
	var missing []string
	value := func(key string, required bool) string {
		v := strings.TrimSpace(string(s.Data[key]))
		if v == "" && required {
			missing = append(missing, key)
		}
		return v
	}
	c := &credentials{typ: p.spec.Type, corpID: p.spec.CorpID}
	switch p.spec.Type {
	case v1alpha1.TokenTypeInternalApp:
		c.app = dingtalk.AppCredentials{AppKey: value(keys.AppKey, true), AppSecret: value(keys.AppSecret, true)}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		c.suite = dingtalk.SuiteCredentials{
			SuiteKey:    value(keys.SuiteKey, true),
			SuiteSecret: value(keys.SuiteSecret, true),
			// With Stream mode the ticket is pushed: one here only seeds the first fetch.
			SuiteTicket: value(keys.SuiteTicket, p.spec.TicketSource != v1alpha1.SuiteTicketSourceStream),
		}
	case v1alpha1.TokenTypeUser:
		// The bootstrap keys are optional here: once used, they may be removed from the Secret.
		c.user = dingtalk.UserCredentials{
			ClientID:     value(keys.ClientID, true),
			ClientSecret: value(keys.ClientSecret, true),
			AuthCode:     value(keys.AuthCode, false),
			RefreshToken: value(keys.RefreshToken, false),
		}
	default:
		return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf("unknown token type %q", p.spec.Type)}, nil
	}
	if len(missing) > 0 {
		return nil, &failure{reason: v1alpha1.ReasonCredentialsNotFound, message: fmt.Sprintf(
			"credentials Secret %q has no value for key(s) %s", key.Name, strings.Join(missing, ", "))}, nil
	}
	sh.memory.setCredentials(p.key, p.uid, p.generation, key.Name, s.ResourceVersion, credentialsMemo{values: c})
	return c, nil, nil
}

// oversizedCredential refuses a credentials Secret in which a key the type reads holds more than
// maxCredentialValue bytes: CredentialsInvalid naming the Secret and the key, never the value.
func oversizedCredential(s *corev1.Secret, spec tokenSpec) *failure {
	for _, k := range readKeys(spec) {
		if len(s.Data[k]) > maxCredentialValue {
			return &failure{reason: v1alpha1.ReasonCredentialsInvalid, message: fmt.Sprintf(
				"credentials Secret %q: key %q holds more than %d KiB, more than any DingTalk credential: refused before any call to DingTalk",
				s.Name, k, maxCredentialValue>>10)}
		}
	}
	return nil
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
	return sh.fetcher.setKey(parts...)
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

// digest is status.credentialsDigest: an HMAC keyed by the UID of every value but the suite ticket.
func (c *credentials) digest(uid types.UID) string {
	return uidDigest(uid, c.values()...)
}

// ticketDigest is status.suiteTicketDigest ("" for types without a suite ticket).
func (c *credentials) ticketDigest(uid types.UID) string {
	if c.suite.SuiteTicket == "" {
		return ""
	}
	return uidDigest(uid, "suiteTicket", c.suite.SuiteTicket)
}

// setParts is the full credential set that decides sharing: the type, every credential value
// (the suite ticket included), corpId and the endpoint.
func (c *credentials) setParts(endpoint string) []string {
	return append(c.values(), c.suite.SuiteTicket, endpoint)
}

// shared reports whether tokens of this type may be shared between DingTalkTokens: every type but
// User (a user token's refresh token rotates; two holders would fight).
func (c *credentials) shared() bool { return c.typ != v1alpha1.TokenTypeUser }
