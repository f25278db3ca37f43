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

// Command dingtalk-simulator serves a stand-in for DingTalk's token endpoints for tests,
// benchmarks and demos. It prints the URL it listens on, on its own line on stdout, and stops
// gracefully on SIGINT or SIGTERM.
//
//	dingtalk-simulator --config config/simulator/credentials.yaml
//	dingtalk-simulator --fault-status 503 --fault-rate 0.2 --fault-endpoint /v1.0/oauth2/accessToken
//	dingtalk-simulator --fault '{"retryAfter":30,"count":3}' --fault '{"latency":"2s"}'
//	dingtalk-simulator --push-interval 5m --push-on-connect --ticket-grace 2m
//
// It also serves DingTalk Stream mode's gateway (connections/open and a websocket endpoint) that
// pushes suite tickets. Control endpoints: /_sim/faults, /_sim/stats, /_sim/validate,
// /_sim/credentials, /_sim/push and /_sim/stream (see package internal/simulator).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dingtalk-simulator:", err)
		os.Exit(1)
	}
}

// faultList is a repeatable --fault flag holding one JSON Fault each.
type faultList []simulator.Fault

func (l *faultList) String() string { return fmt.Sprintf("%d fault(s)", len(*l)) }

func (l *faultList) Set(v string) error {
	var f simulator.Fault
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}

// run parses args, serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dingtalk-simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8089", "address to listen on (host:port); keep it on loopback unless you mean otherwise")
	configPath := fs.String("config", "", "YAML credentials file (apps, suites, users); empty starts with none")
	verbose := fs.Bool("v", false, "log every answered call (endpoint, credential id, result; never a secret)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	var faults faultList
	fs.Var(&faults, "fault", `a fault as JSON, e.g. '{"status":503,"rate":0.1}' (repeatable)`)
	var f simulator.Fault
	var latency time.Duration
	fs.StringVar(&f.Endpoint, "fault-endpoint", "", "fault flags: limit to this token path, e.g. /v1.0/oauth2/accessToken")
	fs.StringVar(&f.Credential, "fault-credential", "", "fault flags: limit to this appKey, suiteKey or clientId")
	fs.Float64Var(&f.Rate, "fault-rate", 0, "fault flags: probability 0..1 that a matching call is affected (0 = always)")
	fs.IntVar(&f.Count, "fault-count", 0, "fault flags: affect only the next N matching calls (0 = unlimited)")
	fs.IntVar(&f.Status, "fault-status", 0, "fault flags: answer this HTTP status")
	fs.StringVar(&f.Code, "fault-code", "", "fault flags: answer this DingTalk error code")
	fs.IntVar(&f.RetryAfter, "fault-retry-after", 0, "fault flags: answer 429 (or --fault-status) with this Retry-After in seconds")
	fs.DurationVar(&latency, "fault-latency", 0, "fault flags: delay answers by this duration")
	fs.BoolVar(&f.Malformed, "fault-malformed", false, "fault flags: answer HTTP 200 with malformed JSON")
	fs.BoolVar(&f.Close, "fault-close", false, "fault flags: close the connection without answering")
	fs.IntVar(&f.ErrCode200, "fault-errcode200", 0, "fault flags: answer HTTP 200 with this errcode")
	var stream streamFlags
	stream.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "dingtalk-simulator", version.String())
		return nil
	}
	f.Latency = simulator.Duration(latency)
	if f != (simulator.Fault{}) {
		faults = append(faults, f)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg := simulator.Config{}
	if *configPath != "" {
		var err error
		if cfg, err = simulator.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	stream.apply(fs, &cfg.Stream)
	if err := cfg.Stream.Validate(); err != nil {
		return err
	}
	sim := simulator.New(cfg, nil)
	sim.SetLogger(log)
	for _, f := range faults {
		if err := sim.SetFault(f); err != nil {
			return fmt.Errorf("fault: %w", err)
		}
	}
	if host, _, err := net.SplitHostPort(*listen); err == nil && !dingtalk.IsLoopback(host) {
		log.Warn("Listening beyond loopback: anyone who reaches this address can mint simulated tokens and change faults", "listen", *listen)
	}

	srv, err := simulator.Listen(*listen, sim)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, srv.URL())
	log.Info("Started DingTalk simulator", "url", srv.URL(), "apps", len(cfg.Apps), "suites", len(cfg.Suites),
		"users", len(cfg.Users), "faults", len(faults), "pushInterval", time.Duration(cfg.Stream.PushInterval),
		"ticketGrace", time.Duration(cfg.Stream.TicketGrace))

	<-ctx.Done()
	log.Info("Stopping DingTalk simulator")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// streamFlags are the Stream gateway's settings; each one given overrides the credentials file's
// stream section.
type streamFlags struct {
	pushInterval, ticketGrace, pingInterval, redeliverInterval time.Duration
	pushOnConnect                                              bool
}

func (sf *streamFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&sf.pushInterval, "push-interval", 0, "stream: push a new suite ticket to each connected suite every interval (0 = never)")
	fs.BoolVar(&sf.pushOnConnect, "push-on-connect", false, "stream: push the suite's current ticket when a connection of it opens")
	fs.DurationVar(&sf.ticketGrace, "ticket-grace", 0, "stream: how long the ticket a push replaced stays valid (0 = refused at once)")
	fs.DurationVar(&sf.pingInterval, "ping-interval", simulator.DefaultPingInterval, "stream: interval of SYSTEM pings on each connection")
	fs.DurationVar(&sf.redeliverInterval, "redeliver-interval", simulator.DefaultRedeliverInterval, "stream: resend an event not acked SUCCESS after this")
}

// apply copies the flags given on the command line into sc.
func (sf *streamFlags) apply(fs *flag.FlagSet, sc *simulator.StreamConfig) {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "push-interval":
			sc.PushInterval = simulator.Duration(sf.pushInterval)
		case "push-on-connect":
			sc.PushOnConnect = sf.pushOnConnect
		case "ticket-grace":
			sc.TicketGrace = simulator.Duration(sf.ticketGrace)
		case "ping-interval":
			sc.PingInterval = simulator.Duration(sf.pingInterval)
		case "redeliver-interval":
			sc.RedeliverInterval = simulator.Duration(sf.redeliverInterval)
		}
	})
}
