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

package tokenproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"
)

// Reason says why no valid token is held.
type Reason string

const (
	// ReasonMissing: the token file (or the expiry file) is not there, or is empty.
	ReasonMissing Reason = "TokenMissing"
	// ReasonUnreadable: a file is there but cannot be read (permissions, a directory).
	ReasonUnreadable Reason = "TokenUnreadable"
	// ReasonInvalid: the token holds characters no token has or is too long, or the expiry is
	// not an RFC 3339 time.
	ReasonInvalid Reason = "TokenInvalid"
	// ReasonExpired: the expiry has passed.
	ReasonExpired Reason = "TokenExpired"
)

// NoTokenError says why no valid token is held. Its message names files, never their content.
type NoTokenError struct {
	Reason Reason
	// Detail names the file and the problem.
	Detail string
}

func (e *NoTokenError) Error() string { return "no valid access token: " + e.Detail }

// Bounds of what is read.
const (
	maxTokenBytes  = 4 << 10
	maxExpiryBytes = 256
	// recheckAfter: a token read longer ago than this is checked again on use (a stat of the
	// directory), so that no file event is needed for correctness.
	recheckAfter = time.Second
)

// dataLink is the kubelet's link to the current version of a mounted Secret.
const dataLink = "..data"

// Token is a token read from the directory. Its value never leaves the package but in the
// requests sent upstream.
type Token struct {
	value string
	// Expires is the token's expiry (zero without an expiry key).
	Expires time.Time
	// Loaded is when this value was first read.
	Loaded time.Time
}

// Value is the token itself: for the requests sent upstream only.
func (t Token) Value() string { return t.value }

// snapshot is what the last check of the directory found.
type snapshot struct {
	version string // names what was read: the ..data link's target, or the files' stat
	tok     Token
	err     *NoTokenError // why there is no token (then tok is empty)
	checked time.Time
}

// Source keeps the token of a mounted Secret directory current: it re-reads when kubelet swaps
// the directory's ..data link (an fsnotify watch, Watch) and, with or without events, checks
// again (one stat) on any use more than a second after the last check. Safe for concurrent use;
// Current costs an atomic load in the common case.
type Source struct {
	dir, tokenKey, expiryKey string
	clk                      clock.PassiveClock
	log                      *slog.Logger

	mu    sync.Mutex // serializes checks
	cur   atomic.Pointer[snapshot]
	dirty atomic.Bool // a file event arrived since the last check
}

// NewSource reads tokenKey (and expiryKey, unless "") from dir. clk reads the time (nil: real).
func NewSource(dir, tokenKey, expiryKey string, clk clock.PassiveClock, log *slog.Logger) *Source {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Source{dir: dir, tokenKey: tokenKey, expiryKey: expiryKey, clk: clk, log: log}
}

// Current returns the token if a valid one is held, else a *NoTokenError.
func (s *Source) Current() (Token, error) {
	now := s.clk.Now()
	snap := s.cur.Load()
	if snap == nil || s.dirty.Load() || now.Sub(snap.checked) >= recheckAfter || now.Before(snap.checked) {
		snap = s.check(false)
	}
	return snap.valid(now)
}

// Reload checks the directory now, whatever the time of the last check, and returns the token
// if a valid one is held.
func (s *Source) Reload() (Token, error) {
	return s.check(true).valid(s.clk.Now())
}

// Last is the last token read, valid or not, and whether there was one.
func (s *Source) Last() (Token, bool) {
	snap := s.cur.Load()
	if snap == nil || snap.err != nil {
		return Token{}, false
	}
	return snap.tok, true
}

func (snap *snapshot) valid(now time.Time) (Token, error) {
	switch {
	case snap.err != nil:
		return Token{}, snap.err
	case !snap.tok.Expires.IsZero() && !now.Before(snap.tok.Expires):
		return Token{}, &NoTokenError{Reason: ReasonExpired, Detail: "the token expired at " + snap.tok.Expires.UTC().Format(time.RFC3339)}
	}
	return snap.tok, nil
}

// check looks at the directory: unless forced, only when the last check is stale (another
// caller may have just done it). A version seen before is not read again.
func (s *Source) check(force bool) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clk.Now()
	prev := s.cur.Load()
	if !force && prev != nil && !s.dirty.Load() && now.Sub(prev.checked) < recheckAfter && !now.Before(prev.checked) {
		return prev
	}
	s.dirty.Store(false) // an event from here on asks for another check
	version := s.version()
	// A version seen before is not read again, unless its read failed: a failure that passes
	// (a file briefly unreadable, fixed in place) must not stick until the next swap.
	if prev != nil && prev.err == nil && version != "" && version == prev.version {
		next := *prev
		next.checked = now
		s.cur.Store(&next)
		return &next
	}
	next := s.read(now)
	if prev != nil && next.err == nil && prev.err == nil && next.tok.value == prev.tok.value {
		next.tok.Loaded = prev.tok.Loaded // a renewal that kept the value
	}
	s.logChange(prev, next)
	s.cur.Store(next)
	return next
}

// version names the directory's current content without reading it: the ..data link's target
// (kubelet writes every version into a new directory), else the key files' identity and
// modification times. "" means unknown (read again).
func (s *Source) version() string {
	if target, err := os.Readlink(filepath.Join(s.dir, dataLink)); err == nil {
		return "link:" + target
	}
	v := "stat:"
	for _, key := range s.keys() {
		fi, err := os.Stat(filepath.Join(s.dir, key))
		if err != nil {
			return ""
		}
		v += fmt.Sprintf("%s:%d:%d:%d;", key, fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	}
	return v
}

func (s *Source) keys() []string {
	if s.expiryKey == "" {
		return []string{s.tokenKey}
	}
	return []string{s.tokenKey, s.expiryKey}
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// read reads the token and expiry of one version: in a kubelet layout, from the directory ..data
// points to, resolved once and checked again after the read (kubelet may remove it meanwhile:
// then it is read again).
func (s *Source) read(now time.Time) *snapshot {
	var snap *snapshot
	for range 3 {
		target, linkErr := os.Readlink(filepath.Join(s.dir, dataLink))
		base := s.dir
		if linkErr == nil {
			base = filepath.Join(s.dir, target)
		}
		snap = s.readFrom(base, now)
		if linkErr != nil {
			snap.version = s.version()
			return snap
		}
		if again, err := os.Readlink(filepath.Join(s.dir, dataLink)); err == nil && again == target {
			snap.version = "link:" + target
			return snap
		}
	}
	snap.version = "" // swapped under every read: the next use reads again
	return snap
}

func (s *Source) readFrom(base string, now time.Time) *snapshot {
	snap := &snapshot{checked: now}
	raw, nerr := readBounded(filepath.Join(base, s.tokenKey), maxTokenBytes, s.tokenKey)
	if nerr != nil {
		snap.err = nerr
		return snap
	}
	tok := bytes.TrimSpace(raw)
	if !printable(tok) {
		snap.err = &NoTokenError{Reason: ReasonInvalid, Detail: s.tokenKey + " holds characters no access token has"}
		return snap
	}
	snap.tok = Token{value: string(tok), Loaded: now}
	if s.expiryKey == "" {
		return snap
	}
	raw, nerr = readBounded(filepath.Join(base, s.expiryKey), maxExpiryBytes, s.expiryKey)
	if nerr != nil {
		snap.tok, snap.err = Token{}, nerr
		return snap
	}
	exp, err := time.Parse(time.RFC3339, string(bytes.TrimSpace(raw)))
	if err != nil {
		snap.tok, snap.err = Token{}, &NoTokenError{Reason: ReasonInvalid, Detail: s.expiryKey + " is not an RFC 3339 time"}
		return snap
	}
	snap.tok.Expires = exp
	return snap
}

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int, key string) ([]byte, *NoTokenError) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NoTokenError{Reason: ReasonMissing, Detail: key + " is missing from the token directory"}
	}
	if err != nil {
		return nil, &NoTokenError{Reason: ReasonUnreadable, Detail: key + " cannot be opened (" + errorKind(err) + ")"}
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	switch {
	case err != nil:
		return nil, &NoTokenError{Reason: ReasonUnreadable, Detail: key + " cannot be read (" + errorKind(err) + ")"}
	case len(b) > limit:
		return nil, &NoTokenError{Reason: ReasonInvalid, Detail: fmt.Sprintf("%s is longer than %d bytes", key, limit)}
	case len(bytes.TrimSpace(b)) == 0:
		return nil, &NoTokenError{Reason: ReasonMissing, Detail: key + " is empty"}
	}
	return b, nil
}

// errorKind names a file error without its path.
func errorKind(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// printable reports whether b is printable ASCII without spaces: what a token is made of, and
// nothing that could split a header or a query.
func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return len(b) > 0
}

// logChange logs a transition: a new token, or the reason there is none (never a value).
func (s *Source) logChange(prev, next *snapshot) {
	switch {
	case next.err != nil && (prev == nil || prev.err == nil || prev.err.Reason != next.err.Reason):
		s.log.Warn("No valid access token", "reason", next.err.Reason, "detail", next.err.Detail)
	case next.err == nil && (prev == nil || prev.err != nil || prev.tok.value != next.tok.value):
		s.log.Info("Loaded access token", "expiresAt", next.tok.Expires)
	case next.err == nil && !prev.tok.Expires.Equal(next.tok.Expires):
		s.log.Info("Loaded access token renewal", "expiresAt", next.tok.Expires)
	}
}

// Watch watches the directory until ctx ends: any event in it (kubelet's rename of ..data_tmp
// over ..data among them) checks the directory at once. When the watch cannot be set up (no
// directory yet), it is tried again every 10 s; Current's re-check keeps the token current
// meanwhile.
func (s *Source) Watch(ctx context.Context) {
	retry := time.NewTicker(10 * time.Second)
	defer retry.Stop()
	for {
		err := s.watch(ctx)
		if err == nil {
			return
		}
		s.log.Warn("Could not watch the token directory; checking it on use only", "error", errorKind(err))
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		}
	}
}

func (s *Source) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(s.dir); err != nil {
		return err
	}
	s.dirty.Store(true) // whatever happened before the watch
	s.check(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return errors.New("watch closed")
			}
			s.dirty.Store(true)
			s.check(true)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch closed")
			}
			s.log.Warn("Token directory watch reported an error", "error", errorKind(err))
			s.dirty.Store(true)
		}
	}
}
