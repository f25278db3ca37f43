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

// Package simulator is an in-process stand-in for DingTalk's token endpoints, for tests,
// benchmarks and demos. It serves the four endpoints of the new API with DingTalk's paths, JSON
// names, error shapes and token semantics:
//
//   - internal-app and user access tokens are reused within their validity, and each call renews
//     (extends) them;
//   - corp and suite calls issue a new token each time; older ones stay valid until their own expiry;
//   - a refresh_token grant rotates the refresh token and invalidates the old one; refresh tokens
//     live 30 days;
//   - an authorization code works once and yields a refresh token;
//   - a suite ticket must be the suite's current one (400 invalidSuiteTicket);
//   - a corp token needs the org to have authorized the suite (400 invalidAuthInfo).
//
// It also serves DingTalk Stream mode's gateway (connections/open and the websocket endpoint, see
// gateway.go): pings, suite_ticket pushes (periodic, on connect or on demand) that replace the
// suite's ticket while the old one stays valid for a grace period, redelivery of unacked events,
// and fault hooks (disconnect, drop, oversized and garbage frames, refused opens).
//
// Its business endpoints (business.go) use a token the way DingTalk's do, for tests of what
// consumes tokens (dingtalk-token-proxy): GET /v1.0/contact/users/me and /v1.0/contact/users/<unionId>
// on the new API (header x-acs-dingtalk-access-token or Bearer; a bad token is HTTP 400
// InvalidAuthentication), POST /topapi/v2/user/get and GET /user/get on the old one
// (?access_token=; HTTP 200 with errcode 88 and sub_code 40014, or 40014/41001/42001).
//
// Its sign-in page, GET /oauth2/auth (see signin.go), signs a configured user in at once and
// redirects to a loopback redirect_uri with a new one-time authCode, as DingTalk's login page does.
//
// Faults can be injected (Fault), calls are counted (Stats) and tokens validated (Valid), from Go
// or over HTTP under /_sim/. Token values come from crypto/rand. Nothing secret is logged, counted
// or answered back.
package simulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// RefreshTokenLifetime is how long a user refresh token stays valid.
const RefreshTokenLifetime = 30 * 24 * time.Hour

// Simulator holds the credentials DingTalk would accept, the tokens it issued, the injected faults
// and the call counters. It is safe for concurrent use.
type Simulator struct {
	clk clock.PassiveClock
	log *slog.Logger

	mu        sync.Mutex
	apps      map[string]*appState
	suites    map[string]*suiteState
	users     map[string]*userState
	tokens    map[string]issued // every access token issued (kept a while after it expires)
	nextSweep int               // len(tokens) at which long-expired tokens are dropped
	faults    []Fault
	stats     Stats

	gw *gateway // Stream mode; its own lock
}

type appState struct {
	App
	token string // current token, reused and renewed while valid
}

type suiteState struct {
	Suite
	corps map[string]bool
	// graceTicket is the ticket a push replaced, still accepted until graceUntil.
	graceTicket string
	graceUntil  time.Time
}

// ticketOK reports whether ticket is the current one, or the replaced one within its grace.
func (su *suiteState) ticketOK(ticket string, now time.Time) bool {
	return secretEqual(su.SuiteTicket, ticket) ||
		su.graceTicket != "" && now.Before(su.graceUntil) && secretEqual(su.graceTicket, ticket)
}

type userState struct {
	User
	token   string               // current access token, reused and renewed while valid
	refresh map[string]time.Time // valid refresh tokens and their expiry
	current string               // newest refresh token
	codes   map[string]bool      // unused authorization codes
}

// New returns a simulator accepting cfg's credentials. clk reads the time (nil: the real clock).
// New panics when cfg is invalid (see Config.Validate); Start returns an error instead.
func New(cfg Config, clk clock.PassiveClock) *Simulator {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("simulator: invalid config: %v", err))
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	s := &Simulator{
		clk:    clk,
		log:    slog.New(slog.DiscardHandler),
		apps:   map[string]*appState{},
		suites: map[string]*suiteState{},
		users:  map[string]*userState{},
		tokens: map[string]issued{},
		stats:  newStats(),
	}
	s.gw = newGateway(s, cfg.Stream)
	s.add(cfg)
	return s
}

// SetLogger sets where the simulator logs, at debug level, one line per answered call
// (endpoint, credential id, result, status; never a secret). The default discards.
func (s *Simulator) SetLogger(l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = l
}

func (s *Simulator) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// AddCredentials validates cfg and adds (or replaces) its apps, suites and users. cfg.Stream is
// read by New only.
func (s *Simulator) AddCredentials(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.add(cfg)
	return nil
}

// AddApp adds an internal app, replacing one with the same appKey.
func (s *Simulator) AddApp(a App) error { return s.AddCredentials(Config{Apps: []App{a}}) }

// AddSuite adds a suite, replacing one with the same suiteKey.
func (s *Simulator) AddSuite(su Suite) error { return s.AddCredentials(Config{Suites: []Suite{su}}) }

// AddUser adds a user, replacing one with the same clientId (and its tokens' reuse state).
func (s *Simulator) AddUser(u User) error { return s.AddCredentials(Config{Users: []User{u}}) }

func (s *Simulator) add(cfg Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	for _, a := range cfg.Apps {
		s.apps[a.AppKey] = &appState{App: a}
	}
	for _, su := range cfg.Suites {
		st := &suiteState{Suite: su, corps: map[string]bool{}}
		for _, c := range su.AuthorizedCorps {
			st.corps[c] = true
		}
		s.suites[su.SuiteKey] = st
	}
	for _, u := range cfg.Users {
		st := &userState{User: u, refresh: map[string]time.Time{}, codes: map[string]bool{}}
		for _, rt := range u.RefreshTokens {
			st.refresh[rt] = now.Add(RefreshTokenLifetime)
			st.current = rt
		}
		for _, c := range u.AuthCodes {
			st.codes[c] = true
		}
		s.users[u.ClientID] = st
	}
}

// SetSuiteTicket makes ticket the suite's current ticket, as DingTalk's push would.
func (s *Simulator) SetSuiteTicket(suiteKey, ticket string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	su, ok := s.suites[suiteKey]
	if !ok {
		return fmt.Errorf("unknown suite %q", suiteKey)
	}
	su.SuiteTicket = ticket
	return nil
}

// AuthorizeCorp records that the org corpID authorized the suite.
func (s *Simulator) AuthorizeCorp(suiteKey, corpID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	su, ok := s.suites[suiteKey]
	if !ok {
		return fmt.Errorf("unknown suite %q", suiteKey)
	}
	su.corps[corpID] = true
	return nil
}

// AddAuthCode adds a one-time authorization code for the user of clientID.
func (s *Simulator) AddAuthCode(clientID, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[clientID]
	if !ok {
		return fmt.Errorf("unknown user client %q", clientID)
	}
	u.codes[code] = true
	return nil
}

// AddRefreshToken adds a valid refresh token for the user of clientID and makes it the current one.
func (s *Simulator) AddRefreshToken(clientID, refreshToken string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[clientID]
	if !ok {
		return fmt.Errorf("unknown user client %q", clientID)
	}
	u.refresh[refreshToken] = s.clk.Now().Add(RefreshTokenLifetime)
	u.current = refreshToken
	return nil
}

// CurrentRefreshToken returns the newest valid refresh token of the user of clientID, or "".
func (s *Simulator) CurrentRefreshToken(clientID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[clientID]
	if !ok {
		return ""
	}
	if exp, ok := u.refresh[u.current]; ok && s.clk.Now().Before(exp) {
		return u.current
	}
	return ""
}

// Valid reports whether accessToken was issued by the simulator and has not expired.
func (s *Simulator) Valid(accessToken string) bool {
	ok, _ := s.validate(accessToken)
	return ok
}

// validate returns whether accessToken is valid and, if so, its expiry.
func (s *Simulator) validate(accessToken string) (bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.tokens[accessToken]
	if !ok || !s.clk.Now().Before(it.expires) {
		return false, time.Time{}
	}
	return true, it.expires
}

// tokenKind is what an access token was issued for: the business endpoints accept some kinds only.
type tokenKind int

const (
	appToken   tokenKind = iota // internal app
	corpToken                   // third-party app, for one org
	suiteToken                  // third-party suite
	userToken                   // a signed-in user
)

// issued is an access token the simulator issued.
type issued struct {
	expires time.Time
	kind    tokenKind
	cred    string // the appKey, suiteKey or clientId it was issued to
}

// expiredMemory is how long an expired token is still known as one (the old API tells an
// expired token, errcode 42001, from one it never issued, 40014).
const expiredMemory = time.Hour

// issueLocked records a new random token of kind for cred, valid until now+life.
func (s *Simulator) issueLocked(now time.Time, life time.Duration, kind tokenKind, cred string) string {
	if len(s.tokens) >= s.nextSweep {
		for t, it := range s.tokens {
			if now.Sub(it.expires) > expiredMemory {
				delete(s.tokens, t)
			}
		}
		s.nextSweep = max(1024, 2*len(s.tokens))
	}
	t := randomHex(16)
	s.tokens[t] = issued{expires: now.Add(life), kind: kind, cred: cred}
	return t
}

// reuseLocked renews *current when still valid, else issues a new token into it.
func (s *Simulator) reuseLocked(current *string, now time.Time, life time.Duration, kind tokenKind, cred string) string {
	if it, ok := s.tokens[*current]; ok && now.Before(it.expires) {
		it.expires = now.Add(life)
		s.tokens[*current] = it
		return *current
	}
	*current = s.issueLocked(now, life, kind, cred)
	return *current
}

// randomHex returns n random bytes from crypto/rand, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic("simulator: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// secretEqual compares secrets in constant time.
func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
