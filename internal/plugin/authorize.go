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

package plugin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
)

// Sign-in defaults. The redirect URL http://127.0.0.1:8000/callback must be registered for the
// DingTalk app; DefaultCallbackPort keeps it the same on every run.
const (
	DefaultLoginEndpoint = "https://login.dingtalk.com"
	DefaultCallbackPort  = 8000
	callbackPath         = "/callback"
	// maxAuthCodeBytes refuses a code the operator would refuse too (a credential over 4 KiB).
	maxAuthCodeBytes = 4096
	// maxIgnoredShown is how many ignored callback requests (a wrong state) the command reports.
	maxIgnoredShown = 3
)

type authorizeOptions struct {
	loginEndpoint string
	scope         string
	port          int
	noBrowser     bool
	timeout       time.Duration
	wait          bool
	readyTimeout  time.Duration
}

func newAuthorizeCommand(o *Options) *cobra.Command {
	ao := &authorizeOptions{}
	cmd := &cobra.Command{
		Use:   "authorize NAME",
		Short: "Sign a user in to DingTalk for a User-type DingTalkToken",
		Long: "authorize runs DingTalk's OAuth2 sign-in for a User-type DingTalkToken. It reads clientId from the\n" +
			"credentials Secret, opens DingTalk's sign-in page in the browser (or prints its URL with --no-browser),\n" +
			"receives the redirect on http://127.0.0.1:<port>/callback (a request with another state is answered 400\n" +
			"and ignored), writes the authorization code into the credentials Secret (only if the Secret did not\n" +
			"change meanwhile) and waits until the DingTalkToken is Ready. The redirect URL must be registered\n" +
			"for the DingTalk app: with the default --port that is http://127.0.0.1:8000/callback. The code is\n" +
			"never printed.",
		Example: "  kubectl dingtalk authorize alice -n apps\n" +
			"  kubectl dingtalk authorize alice -n apps --no-browser --port 8123",
		Args: needName,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ao.validate(); err != nil {
				return err
			}
			return o.runAuthorize(cmd.Context(), ao, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&ao.loginEndpoint, "login-endpoint", DefaultLoginEndpoint, "DingTalk's sign-in host (https; http only on loopback)")
	f.StringVar(&ao.scope, "scope", "openid", `OAuth2 scope; "openid corpid" also asks for the user's organisation`)
	f.IntVar(&ao.port, "port", DefaultCallbackPort, "loopback port of the redirect URL http://127.0.0.1:<port>/callback (0: any free port)")
	f.BoolVar(&ao.noBrowser, "no-browser", false, "print the sign-in URL instead of opening a browser")
	f.DurationVar(&ao.timeout, "timeout", 5*time.Minute, "how long to wait for the sign-in")
	f.BoolVar(&ao.wait, "wait", true, "after the sign-in, wait until the DingTalkToken is Ready")
	f.DurationVar(&ao.readyTimeout, "ready-timeout", 2*time.Minute, "how long to wait for Ready after the sign-in")
	return cmd
}

func (ao *authorizeOptions) validate() error {
	switch {
	case ao.port < 0 || ao.port > 65535:
		return fmt.Errorf("--port %d is not a port number", ao.port)
	case ao.timeout <= 0:
		return errors.New("--timeout must be positive")
	case ao.wait && ao.readyTimeout <= 0:
		return errors.New("--ready-timeout must be positive")
	case strings.TrimSpace(ao.scope) == "":
		return errors.New("--scope must not be empty")
	}
	_, err := loginURL(ao.loginEndpoint)
	return err
}

// loginURL checks the sign-in host: an absolute https URL, or http on a loopback address.
func loginURL(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("--login-endpoint %q must be an absolute https URL", endpoint)
	}
	if u.Scheme == "http" && !dingtalk.IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("--login-endpoint %q must use https (plain http only on a loopback address)", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--login-endpoint %q must not carry a query or a fragment", endpoint)
	}
	return u, nil
}

// authURL builds DingTalk's sign-in URL:
// {endpoint}/oauth2/auth?redirect_uri=...&response_type=code&client_id=...&scope=...&state=...&prompt=consent
func authURL(endpoint, clientID, redirectURI, scope, state string) (string, error) {
	u, err := loginURL(endpoint)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/oauth2/auth"
	q := []string{
		"redirect_uri=" + queryEscape(redirectURI),
		"response_type=code",
		"client_id=" + queryEscape(clientID),
		"scope=" + queryEscape(scope),
		"state=" + queryEscape(state),
		"prompt=consent",
	}
	u.RawQuery = strings.Join(q, "&")
	return u.String(), nil
}

// queryEscape escapes a query value with %20 for spaces ("openid%20corpid"), as DingTalk shows it.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// newState returns 32 random bytes, base64url: the sign-in's CSRF guard.
func newState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// stateMatches compares the redirect's state with ours in constant time.
func stateMatches(want, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// safeCode keeps the characters of an OAuth2 error code DingTalk may send back.
var safeCode = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// readRedirect reads the authorization code (authCode or code) of a redirect whose state
// matched.
func readRedirect(q url.Values) (string, error) {
	if e := q.Get("error"); e != "" {
		e = safeCode.ReplaceAllString(e, "")
		if len(e) > 64 {
			e = e[:64]
		}
		return "", fmt.Errorf("DingTalk did not sign the user in (error %q); nothing was written", e)
	}
	code := q.Get("authCode")
	if code == "" {
		code = q.Get("code")
	}
	switch {
	case code == "":
		return "", errors.New("the sign-in redirect carried no authCode; nothing was written")
	case len(code) > maxAuthCodeBytes:
		return "", fmt.Errorf("the sign-in redirect's authCode is over %d bytes; nothing was written", maxAuthCodeBytes)
	}
	return code, nil
}

// redirect is one accepted sign-in redirect handed from the callback server to the command.
type redirect struct {
	code string
	err  error
	// stored receives the outcome of storing the code, for the page the browser shows.
	stored chan error
}

// callbackServer receives DingTalk's redirect on the loopback address. A request whose state is
// not this sign-in's (a stale tab, or another local process guessing) is answered 400 and
// ignored: it neither ends the command nor uses up the callback. The first request with the right
// state is the sign-in; any later one is refused.
type callbackServer struct {
	state     string
	redirects chan redirect
	taken     atomic.Bool
	// refused is called for each later redirect, ignored for each one with a wrong state (the
	// command says so).
	refused, ignored func()
}

func (s *callbackServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != callbackPath {
		writePage(w, http.StatusNotFound, "Not found", "This address only receives DingTalk's sign-in redirect at "+callbackPath+".")
		return
	}
	if r.Method != http.MethodGet {
		writePage(w, http.StatusMethodNotAllowed, "Method not allowed", "The sign-in redirect is a GET request.")
		return
	}
	q := r.URL.Query()
	if !stateMatches(s.state, q.Get("state")) {
		s.ignored()
		writePage(w, http.StatusBadRequest, "Sign-in refused",
			"This redirect's state does not match the sign-in the command started (a stale or forged redirect): it is ignored. "+
				"Sign in from the URL the terminal shows.")
		return
	}
	if !s.taken.CompareAndSwap(false, true) {
		s.refused()
		writePage(w, http.StatusConflict, "Sign-in refused",
			"This sign-in was already completed: a second redirect is refused. Return to the terminal.")
		return
	}
	code, err := readRedirect(q)
	rd := redirect{code: code, err: err, stored: make(chan error, 1)}
	s.redirects <- rd // buffered: the command reads the first and only one
	if err == nil {
		err = <-rd.stored
	}
	if err != nil {
		writePage(w, http.StatusBadRequest, "Sign-in failed", oneLine(err.Error())+" See the terminal.")
		return
	}
	writePage(w, http.StatusOK, "Signed in", "The authorization code was stored. You can close this tab and return to the terminal.")
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kubectl dingtalk: {{.Title}}</title></head>
<body style="font-family: sans-serif; margin: 3em;"><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// writePage answers the browser with a short HTML page; the code never appears in it.
func writePage(w http.ResponseWriter, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct{ Title, Message string }{title, message})
}

// signIn is what authorize learnt before the browser step.
type signIn struct {
	tok      *v1alpha1.DingTalkToken
	secret   types.NamespacedName
	codeKey  string
	clientID string
	// resourceVersion of the credentials Secret when the command started: the write's precondition.
	resourceVersion string
}

func (o *Options) runAuthorize(ctx context.Context, ao *authorizeOptions, name string) error {
	c, ns, err := o.client()
	if err != nil {
		return err
	}
	in, err := prepareSignIn(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
	if err != nil {
		return err
	}
	state, err := newState()
	if err != nil {
		return fmt.Errorf("drawing a random state: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ao.port)))
	if err != nil {
		return fmt.Errorf("cannot listen on 127.0.0.1:%d for the sign-in redirect (%s): free the port or choose another --port "+
			"(its redirect URL must be registered for the DingTalk app)", ao.port, oneLine(err.Error()))
	}
	redirectURI := "http://" + ln.Addr().String() + callbackPath
	signInURL, err := authURL(ao.loginEndpoint, in.clientID, redirectURI, ao.scope, state)
	if err != nil {
		_ = ln.Close()
		return err
	}
	var ignored atomic.Int32
	cb := &callbackServer{state: state, redirects: make(chan redirect, 1),
		refused: func() { o.printf("Refused a second sign-in redirect: this sign-in was already completed.\n") },
		ignored: func() {
			// Said a few times, not once per request: a local process could send thousands.
			if n := ignored.Add(1); n <= maxIgnoredShown {
				more := ""
				if n == maxIgnoredShown {
					more = " (further ones are ignored silently)"
				}
				o.printf("Ignored a request to the callback whose state does not match this sign-in%s; still waiting.\n", more)
			}
		}}
	srv := &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	o.showSignIn(ao, signInURL, redirectURI)
	code, rd, err := o.awaitRedirect(ctx, cb, ao.timeout)
	if err != nil {
		return err
	}
	mark, err := o.storeCode(ctx, c, in, code)
	rd.stored <- err
	if err != nil {
		return err
	}
	o.printf("Stored the authorization code in Secret %s (key %s).\n", in.secret, in.codeKey)
	if !ao.wait {
		return nil
	}
	return o.waitReady(ctx, c, client.ObjectKeyFromObject(in.tok), mark, ao.readyTimeout)
}

// prepareSignIn reads the DingTalkToken and the clientId from its credentials Secret.
func prepareSignIn(ctx context.Context, c client.Client, key types.NamespacedName) (*signIn, error) {
	tok, _, err := getToken(ctx, c, key)
	if err != nil {
		return nil, err
	}
	if tok.Spec.Type != v1alpha1.TokenTypeUser {
		return nil, fmt.Errorf("dingtalktoken %s is of type %s: authorize signs a user in for type User only", key, tok.Spec.Type)
	}
	keys := tok.Spec.CredentialsRef.Keys.WithDefaults()
	in := &signIn{tok: tok, codeKey: keys.AuthCode,
		secret: types.NamespacedName{Namespace: tok.Namespace, Name: tok.Spec.CredentialsRef.Name}}
	var s corev1.Secret
	if err := c.Get(ctx, in.secret, &s); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("credentials Secret %s not found: create it with the app's %s and %s first", in.secret, keys.ClientID, keys.ClientSecret)
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("not allowed to get the credentials Secret %s", in.secret)
		}
		return nil, fmt.Errorf("reading the credentials Secret %s: %s", in.secret, oneLine(err.Error()))
	}
	in.clientID = strings.TrimSpace(string(s.Data[keys.ClientID]))
	if in.clientID == "" {
		return nil, fmt.Errorf("credentials Secret %s has no key %s (the app's client id)", in.secret, keys.ClientID)
	}
	in.resourceVersion = s.ResourceVersion
	return in, nil
}

// showSignIn opens the browser (unless --no-browser) and always prints the URL, so that a
// browser that does not open leaves the user a way on.
func (o *Options) showSignIn(ao *authorizeOptions, signInURL, redirectURI string) {
	switch {
	case ao.noBrowser:
		o.printf("Open this URL in a browser and sign in to DingTalk:\n\n    %s\n\n", signInURL)
	case o.OpenBrowser(signInURL) != nil:
		o.printf("Could not open a browser. Open this URL in a browser and sign in to DingTalk:\n\n    %s\n\n", signInURL)
	default:
		o.printf("Opened DingTalk's sign-in page in your browser. If it did not open, visit:\n\n    %s\n\n", signInURL)
	}
	o.printf("Waiting up to %s for the sign-in redirect to %s ...\n", ao.timeout, redirectURI)
}

// awaitRedirect waits for the first redirect; it returns its code and the redirect to answer.
func (o *Options) awaitRedirect(ctx context.Context, cb *callbackServer, timeout time.Duration) (string, redirect, error) {
	t := o.Clock.NewTimer(timeout)
	defer t.Stop()
	select {
	case rd := <-cb.redirects:
		if rd.err != nil {
			return "", rd, rd.err
		}
		return rd.code, rd, nil
	case <-t.C():
		return "", redirect{}, fmt.Errorf("no sign-in redirect within %s; nothing was written: run authorize again", timeout)
	case <-ctx.Done():
		return "", redirect{}, fmt.Errorf("interrupted before the sign-in redirect; nothing was written")
	}
}

// storeCode writes code into the credentials Secret under the resourceVersion read at the start:
// a Secret changed meanwhile is refused. It returns the DingTalkToken's mark before the write,
// so that the wait for Ready sees a token issued after it.
func (o *Options) storeCode(ctx context.Context, c client.Client, in *signIn, code string) (refreshMark, error) {
	var tok v1alpha1.DingTalkToken
	if err := c.Get(ctx, client.ObjectKeyFromObject(in.tok), &tok); err != nil {
		return refreshMark{}, describeGetError(err, tokenRef{Namespace: in.tok.Namespace, Name: in.tok.Name})
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": in.resourceVersion},
		"data":     map[string][]byte{in.codeKey: []byte(code)},
	})
	if err != nil {
		return refreshMark{}, err
	}
	obj := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: in.secret.Namespace, Name: in.secret.Name}}
	err = c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
	switch {
	case err == nil:
		return markOf(&tok.Status.TokenStatus), nil
	case apierrors.IsConflict(err):
		return refreshMark{}, fmt.Errorf("the credentials Secret %s changed after authorize started: the authorization code was not "+
			"written over that change; check the Secret and run authorize again", in.secret)
	case apierrors.IsNotFound(err):
		return refreshMark{}, fmt.Errorf("the credentials Secret %s was deleted during the sign-in; nothing was written", in.secret)
	case apierrors.IsForbidden(err):
		return refreshMark{}, fmt.Errorf("not allowed to patch the credentials Secret %s; nothing was written", in.secret)
	}
	// Only the status reason: an API error could quote the request.
	return refreshMark{}, fmt.Errorf("writing the authorization code into Secret %s failed (%s); nothing was written",
		in.secret, apierrors.ReasonForError(err))
}

// waitReady waits until the DingTalkToken holds a token issued after the code was written
// (Ready True, lastRefreshTime past the mark), and fails early when the operator reports that the
// code did not work.
func (o *Options) waitReady(ctx context.Context, c client.Client, key types.NamespacedName, m refreshMark, timeout time.Duration) error {
	o.printf("Waiting up to %s for dingtalktoken %s to be Ready ...\n", timeout, key)
	var last *v1alpha1.DingTalkToken
	err := poll(ctx, o.Clock, o.PollInterval, timeout, func(ctx context.Context) (bool, error) {
		var tok v1alpha1.DingTalkToken
		if err := c.Get(ctx, key, &tok); err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("dingtalktoken %s was deleted", key)
			}
			return false, nil
		}
		last = &tok
		switch refreshResult(m, &tok.Status.TokenStatus) {
		case outcomeRefreshed:
			return readyTrue(&tok), nil
		case outcomeFailed:
			if r := meta.FindStatusCondition(tok.Status.Conditions, v1alpha1.ConditionRefreshed); r != nil && !transient(r.Reason) {
				return false, fmt.Errorf("dingtalktoken %s did not take the sign-in: %s: %s", key, r.Reason, oneLine(r.Message))
			}
		}
		return false, nil
	})
	switch {
	case errors.Is(err, errTimeout):
		var st *v1alpha1.TokenStatus
		if last != nil {
			st = &last.Status.TokenStatus
		}
		return fmt.Errorf("dingtalktoken %s is not Ready after %s: %s", key, timeout, stateText(st))
	case err != nil:
		return err
	}
	ready := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.ConditionReady)
	o.printf("dingtalktoken %s is Ready: %s\n", key, oneLine(ready.Message))
	return nil
}

func readyTrue(tok *v1alpha1.DingTalkToken) bool {
	c := meta.FindStatusCondition(tok.Status.Conditions, v1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonTokenValid
}

// transient reasons are retried by the operator on its backoff: the code may still be taken.
func transient(reason string) bool {
	switch reason {
	case v1alpha1.ReasonRateLimited, v1alpha1.ReasonProviderUnavailable, v1alpha1.ReasonPending, v1alpha1.ReasonRolloutRestartFailed:
		return true
	}
	return false
}
