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

// Command demo is `make demo`: with nothing but Go, it starts a local control plane (the envtest
// kube-apiserver and etcd), the DingTalk simulator with demo credentials, and the operator
// (the same manager as cmd/main.go); applies config/samples; shows the tokens being issued and
// refreshed; and leaves a kubeconfig so you can look around with kubectl until Ctrl-C.
//
//	go run ./hack/demo [--namespace demo] [--token-lifetime 60s] [--exit-after-refresh]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

// config is the demo's settings, one field per flag.
type config struct {
	root             string        // repository root; other paths are relative to it
	assets           string        // envtest binaries (kube-apiserver, etcd)
	simulatorConfig  string        // simulator credentials YAML
	samples          string        // kustomization applied into namespace
	namespace        string        // where the samples go
	kubeconfig       string        // written for kubectl
	logFile          string        // the operator's log
	tokenLifetime    time.Duration // overrides the simulator's lifetimes when > 0
	clusterSamples   string        // kustomization of ClusterDingTalkTokens and their namespaces ("": none)
	exitAfterRefresh bool          // stop after the first live refresh (tests, CI)
	timeout          time.Duration // bound of the whole run with exitAfterRefresh
}

func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.root, "root", "", "Repository root (default: found from the working directory).")
	fs.StringVar(&c.assets, "assets", "", "Directory of the envtest kube-apiserver and etcd "+
		"(default: $KUBEBUILDER_ASSETS, else bin/k8s/<version> as built by `make envtest`).")
	fs.StringVar(&c.simulatorConfig, "simulator-config", "config/simulator/credentials.yaml", "DingTalk simulator credentials.")
	fs.StringVar(&c.samples, "samples", "config/samples", "Kustomization of the DingTalkTokens and Secrets to apply.")
	fs.StringVar(&c.clusterSamples, "cluster-samples", "config/samples/cluster",
		"Kustomization of the ClusterDingTalkTokens (with their namespaces and credentials) to apply; empty skips that step.")
	fs.StringVar(&c.namespace, "namespace", "demo", "Namespace the samples are applied to.")
	fs.StringVar(&c.kubeconfig, "kubeconfig-out", "bin/demo.kubeconfig", "Where to write a kubeconfig for kubectl.")
	fs.StringVar(&c.logFile, "log-file", "bin/demo-operator.log", "Where the operator's log goes.")
	fs.DurationVar(&c.tokenLifetime, "token-lifetime", 0,
		"Lifetime of the simulator's tokens; 0 keeps the simulator config's (60s in the demo credentials).")
	fs.BoolVar(&c.exitAfterRefresh, "exit-after-refresh", false,
		"Stop after the first live refresh instead of waiting for Ctrl-C (tests and CI).")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "With --exit-after-refresh: give up after this long.")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, nil
}

// run runs the demo until it ends, or until ctx (Ctrl-C) is cancelled: an interrupt at any step
// stops what was started and is no failure.
func run(ctx context.Context, args []string, out io.Writer) error {
	d, err := newDemo(args, out)
	if err != nil {
		return err
	}
	defer d.cleanup()
	runCtx := ctx
	if d.cfg.exitAfterRefresh {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, d.cfg.timeout)
		defer cancel()
	}
	err = d.run(runCtx)
	if ctx.Err() != nil {
		d.printf("\n%s Interrupted: stopping the operator, the simulator and the control plane (everything in it is discarded) ...\n", d.since())
		d.cleanup()
		d.printf("Stopped.\n")
		return nil
	}
	return err
}

func newDemo(args []string, out io.Writer) (*demo, error) {
	c, err := parseFlags(args, out)
	if err != nil {
		return nil, err
	}
	return &demo{cfg: c, out: out, start: time.Now()}, nil
}
