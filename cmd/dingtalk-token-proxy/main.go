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

// Command dingtalk-token-proxy lets an app call DingTalk without ever holding a token. Run it as a
// sidecar beside an app that mounts a DingTalkToken's target Secret; point the app's DingTalk base
// URLs at it; it adds the current token from the mounted files and forwards over HTTPS:
//
//	dingtalk-token-proxy --token-dir /var/run/dingtalk
//	# new API (api.dingtalk.com):  http://127.0.0.1:8480/v1.0/contact/users/me
//	# old API (oapi.dingtalk.com): http://127.0.0.1:8481/topapi/v2/user/get
//	# metrics and probes:          http://127.0.0.1:8482/metrics, /healthz, /readyz
//
// It logs JSON lines to stderr and stops gracefully on SIGINT or SIGTERM. --help lists the flags;
// see docs/calling-dingtalk.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	// Mozilla's CA roots compiled in, used only when the system has none: the release image holds
	// the binaries alone (no /etc/ssl), and DingTalk is reached over https.
	_ "golang.org/x/crypto/x509roots/fallback"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/tokenproxy"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// A sidecar runs in every pod of a workload: trade a little CPU for memory. The live heap
		// is small (a few MiB), so the GC runs often enough at half the default target.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, serves until ctx ends, then shuts down gracefully. It returns the exit status:
// 2 for bad flags, 1 for a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dingtalk-token-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := tokenproxy.DefaultOptions()
	o.Bind(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "dingtalk-token-proxy", version.String())
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "dingtalk-token-proxy: unexpected arguments:", fs.Args())
		return 2
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintln(stderr, "dingtalk-token-proxy:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	srv, err := tokenproxy.Start(o, log, tokenproxy.Hooks{})
	if err != nil {
		log.Error("Failed to start", "error", err.Error())
		return 1
	}
	log.Info("Started dingtalk-token-proxy", "version", version.Version,
		"api", srv.Addrs["api"], "apiUpstream", o.APIUpstream, "apiTokenPlacement", string(o.APITokenPlacement),
		"oapi", srv.Addrs["oapi"], "oapiUpstream", o.OAPIUpstream, "metrics", srv.Addrs["metrics"],
		"tokenDir", o.TokenDir, "tokenKey", o.TokenKey, "expiryKey", o.ExpiryKey)
	status := 0
	select {
	case <-ctx.Done():
	case err := <-srv.Err():
		log.Error("A listener stopped", "error", err.Error())
		status = 1
	}
	log.Info("Stopping dingtalk-token-proxy")
	if err := srv.Shutdown(context.Background()); err != nil {
		log.Error("Requests under way did not finish in time", "error", err.Error())
		return 1
	}
	return status
}
