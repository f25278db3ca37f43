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

package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// DefaultTokenLifetime is DingTalk's token lifetime, used when a credential sets none.
const DefaultTokenLifetime = 7200 * time.Second

// Config is the simulator's credentials file: the apps, suites and users DingTalk would accept.
//
//	apps:
//	- {appKey: dingdemoapp, appSecret: demo-app-secret, tokenLifetime: 60s}
//	suites:
//	- {suiteKey: suitedemo, suiteSecret: demo-suite-secret, suiteTicket: demo-ticket,
//	   authorizedCorps: [dingcorpdemo1], tokenLifetime: 60s}
//	users:
//	- {clientId: dingdemouser, clientSecret: demo-user-secret, refreshTokens: [demo-refresh-token],
//	   authCodes: [demo-auth-code], corpId: dingcorpdemo1, tokenLifetime: 60s}
//
// An optional `stream:` section (StreamConfig) sets the Stream gateway's intervals.
type Config struct {
	Apps   []App        `json:"apps,omitempty"`
	Suites []Suite      `json:"suites,omitempty"`
	Users  []User       `json:"users,omitempty"`
	Stream StreamConfig `json:"stream,omitempty"`
}

// App is an internal app.
type App struct {
	AppKey    string `json:"appKey"`
	AppSecret string `json:"appSecret"`
	// TokenLifetime is the expireIn of its tokens; default DefaultTokenLifetime.
	TokenLifetime Duration `json:"tokenLifetime,omitempty"`
}

// Suite is a third-party suite, its current ticket and the orgs that authorized it.
type Suite struct {
	SuiteKey        string   `json:"suiteKey"`
	SuiteSecret     string   `json:"suiteSecret"`
	SuiteTicket     string   `json:"suiteTicket"`
	AuthorizedCorps []string `json:"authorizedCorps,omitempty"`
	// TokenLifetime is the expireIn of its suite and corp tokens; default DefaultTokenLifetime.
	TokenLifetime Duration `json:"tokenLifetime,omitempty"`
}

// User is an OAuth2 client with one authorized person: the refresh tokens and authorization codes
// DingTalk would accept for it, and the person's org.
type User struct {
	ClientID      string   `json:"clientId"`
	ClientSecret  string   `json:"clientSecret"`
	RefreshTokens []string `json:"refreshTokens,omitempty"`
	AuthCodes     []string `json:"authCodes,omitempty"`
	CorpID        string   `json:"corpId,omitempty"`
	// TokenLifetime is the expireIn of its access tokens; default DefaultTokenLifetime.
	TokenLifetime Duration `json:"tokenLifetime,omitempty"`
}

// String names the app without its secret, so that printing one leaks nothing.
func (a App) String() string { return fmt.Sprintf("app %q", a.AppKey) }

// String names the suite without its secret or ticket.
func (s Suite) String() string { return fmt.Sprintf("suite %q", s.SuiteKey) }

// String names the user's client without its secret, codes or refresh tokens.
func (u User) String() string { return fmt.Sprintf("user %q", u.ClientID) }

// Duration is a time.Duration written as a Go duration string ("60s", "2h") in YAML and JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`duration must be a string such as "60s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and validates a YAML (or JSON) credentials file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses and validates YAML (or JSON); unknown fields are errors.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Validate checks that every credential has its identifying and secret fields, that identifiers
// are unique per kind and that lifetimes are at least one second when set.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	unique := func(kind, id string) {
		if seen[kind+"/"+id] {
			errs = append(errs, fmt.Errorf("duplicate %s %q", kind, id))
		}
		seen[kind+"/"+id] = true
	}
	for i, a := range c.Apps {
		errs = append(errs, a.validate(fmt.Sprintf("apps[%d]", i)))
		unique("appKey", a.AppKey)
	}
	for i, s := range c.Suites {
		errs = append(errs, s.validate(fmt.Sprintf("suites[%d]", i)))
		unique("suiteKey", s.SuiteKey)
	}
	for i, u := range c.Users {
		errs = append(errs, u.validate(fmt.Sprintf("users[%d]", i)))
		unique("clientId", u.ClientID)
	}
	errs = append(errs, c.Stream.Validate())
	return errors.Join(errs...)
}

func (a App) validate(where string) error {
	return errors.Join(
		required(where, "appKey", a.AppKey), required(where, "appSecret", a.AppSecret),
		validLifetime(where, a.TokenLifetime))
}

func (s Suite) validate(where string) error {
	errs := []error{
		required(where, "suiteKey", s.SuiteKey), required(where, "suiteSecret", s.SuiteSecret),
		required(where, "suiteTicket", s.SuiteTicket), validLifetime(where, s.TokenLifetime),
	}
	for _, c := range s.AuthorizedCorps {
		errs = append(errs, required(where, "authorizedCorps[]", c))
	}
	return errors.Join(errs...)
}

func (u User) validate(where string) error {
	errs := []error{
		required(where, "clientId", u.ClientID), required(where, "clientSecret", u.ClientSecret),
		validLifetime(where, u.TokenLifetime),
	}
	for _, v := range u.RefreshTokens {
		errs = append(errs, required(where, "refreshTokens[]", v))
	}
	for _, v := range u.AuthCodes {
		errs = append(errs, required(where, "authCodes[]", v))
	}
	return errors.Join(errs...)
}

func required(where, field, v string) error {
	if v == "" {
		return fmt.Errorf("%s.%s is required", where, field)
	}
	return nil
}

func validLifetime(where string, d Duration) error {
	if d != 0 && time.Duration(d) < time.Second {
		return fmt.Errorf("%s.tokenLifetime must be at least 1s", where)
	}
	return nil
}

// lifetime returns d, or DefaultTokenLifetime when unset.
func lifetime(d Duration) time.Duration {
	if d <= 0 {
		return DefaultTokenLifetime
	}
	return time.Duration(d)
}
