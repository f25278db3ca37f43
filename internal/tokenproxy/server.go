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
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Hooks are the seams tests use; the zero value is what the binary runs with.
type Hooks struct {
	// Transport sends requests upstream (nil: one with the options' timeouts).
	Transport http.RoundTripper
	// Clock reads the time for token expiry and re-checks (nil: the real clock).
	Clock clock.PassiveClock
}

// Server is a running proxy: its listeners, the token watch, the metrics.
type Server struct {
	// Proxy is the handler both families are served by.
	Proxy *Proxy
	// Addrs are the listeners' actual addresses, by "api", "oapi" and "metrics" (when on).
	Addrs map[string]string

	log     *slog.Logger
	servers []*http.Server
	stop    context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
	timeout time.Duration
}

// Start validates o, starts watching the token directory and serves every listener that is on.
// Stop it with Shutdown.
func Start(o Options, log *slog.Logger, hooks Hooks) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	src := NewSource(o.TokenDir, o.TokenKey, o.ExpiryKey, hooks.Clock, log)
	p, err := New(o, src, log, hooks.Transport)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Proxy: p, Addrs: map[string]string{}, log: log, stop: cancel, errs: make(chan error, 3), timeout: o.ShutdownTimeout}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); src.Watch(ctx) }()

	listeners := []struct {
		name, addr string
		handler    http.Handler
	}{
		{string(FamilyAPI), o.APIListen, p.Handler(FamilyAPI)},
		{string(FamilyOAPI), o.OAPIListen, p.Handler(FamilyOAPI)},
		{"metrics", o.MetricsListen, p.opsHandler()},
	}
	for _, l := range listeners {
		if l.addr == "" {
			continue
		}
		if host, _, _ := net.SplitHostPort(l.addr); !isLoopback(host) && l.name != "metrics" {
			log.Warn("Listening beyond loopback: whoever reaches this address can call DingTalk with the token",
				"listener", l.name, "address", l.addr)
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			_ = s.Shutdown(context.Background())
			return nil, err
		}
		s.Addrs[l.name] = ln.Addr().String()
		srv := &http.Server{
			Handler:           l.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       o.RequestTimeout,
			WriteTimeout:      o.RequestTimeout + 5*time.Second, // the request's own deadline answers first
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    o.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		s.servers = append(s.servers, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errs <- err
			}
		}()
	}
	return s, nil
}

// Err delivers an error when a listener stops serving on its own.
func (s *Server) Err() <-chan error { return s.errs }

// Shutdown stops accepting, lets requests under way finish until ctx ends or the shutdown
// timeout passes, then closes everything.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err, srv.Close())
		}
	}
	s.stop()
	s.wg.Wait()
	return errors.Join(errs...)
}

// opsHandler serves /metrics, /healthz (the process serves) and /readyz (a valid token is held).
func (p *Proxy) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", p.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := p.src.Current(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
