package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

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

// credentialsError is a credentials Secret that is missing or lacks a key: reason CredentialsNotFound.
type credentialsError struct{ msg string }

func (e *credentialsError) Error() string { return e.msg }

// loadCredentials reads the credentials Secret through the uncached API reader (the cache holds
// only the operator's own Secrets). The values read are kept in memory with the Secret's
// resourceVersion and the DingTalkToken's generation (they depend on spec.corpId and
// spec.credentialsRef.keys): while both are unchanged, a pass reuses them instead of reading the
// Secret again. A missing Secret or key is a *credentialsError; any other
// error is the API server's.
func (r *DingTalkTokenReconciler) loadCredentials(ctx context.Context, tok *v1alpha1.DingTalkToken) (*credentials, error) {
	name := tok.Spec.CredentialsRef.Name
	key := types.NamespacedName{Namespace: tok.Namespace, Name: name}
	if r.credentialsCache != nil {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := r.credentialsCache.Get(ctx, key, m); err == nil {
			if c := r.memory.credentials(client.ObjectKeyFromObject(tok), tok.UID, tok.Generation, name, m.ResourceVersion); c != nil {
				return c, nil
			}
		}
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &credentialsError{fmt.Sprintf("credentials Secret %q not found", name)}
		}
		return nil, err
	}
	keys := tok.Spec.CredentialsRef.Keys.WithDefaults()
	var missing []string
	value := func(key string, required bool) string {
		v := strings.TrimSpace(string(s.Data[key]))
		if v == "" && required {
			missing = append(missing, key)
		}
		return v
	}
	c := &credentials{typ: tok.Spec.Type, corpID: tok.Spec.CorpID}
	switch tok.Spec.Type {
	case v1alpha1.TokenTypeInternalApp:
		c.app = dingtalk.AppCredentials{AppKey: value(keys.AppKey, true), AppSecret: value(keys.AppSecret, true)}
	case v1alpha1.TokenTypeThirdPartyApp, v1alpha1.TokenTypeThirdPartySuite:
		c.suite = dingtalk.SuiteCredentials{
			SuiteKey:    value(keys.SuiteKey, true),
			SuiteSecret: value(keys.SuiteSecret, true),
			SuiteTicket: value(keys.SuiteTicket, true),
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
		return nil, &credentialsError{fmt.Sprintf("unknown token type %q", tok.Spec.Type)}
	}
	if len(missing) > 0 {
		return nil, &credentialsError{fmt.Sprintf("credentials Secret %q has no value for key(s) %s", name, strings.Join(missing, ", "))}
	}
	r.memory.setCredentials(client.ObjectKeyFromObject(tok), tok.UID, tok.Generation, name, s.ResourceVersion, c)
	return c, nil
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
