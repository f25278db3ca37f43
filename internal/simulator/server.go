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
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"k8s.io/utils/clock"
)

// Server is a Simulator served over real HTTP. The embedded Simulator is the Go control surface.
type Server struct {
	*Simulator
	srv  *http.Server
	url  string
	done chan struct{}
}

// Start validates cfg and serves a new Simulator on 127.0.0.1 at a free port.
func Start(cfg Config, clk clock.PassiveClock) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return Listen("127.0.0.1:0", New(cfg, clk))
}

// Listen serves sim on addr (host:port) over plain HTTP until Close or Shutdown.
func Listen(addr string, sim *Simulator) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Simulator: sim,
		srv: &http.Server{
			Handler:           sim.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			// net/http's own lines (e.g. about connections dropped by the Close fault) are noise.
			ErrorLog: log.New(io.Discard, "", 0),
		},
		url:  "http://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sim.logger().Error("Simulator stopped serving", "error", err)
		}
	}()
	return s, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// Close stops the server at once, closing open connections (stream connections too).
func (s *Server) Close() error {
	s.gw.close()
	err := s.srv.Close()
	<-s.done
	return err
}

// Shutdown stops the server gracefully: no new connections, open calls finish until ctx ends.
// Stream connections are closed at once (with a going-away close frame).
func (s *Server) Shutdown(ctx context.Context) error {
	s.gw.close()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}
