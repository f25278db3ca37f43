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

// Command manager is the dingtalk-token-operator: it keeps the DingTalk access tokens that
// DingTalkTokens ask for fresh in Secrets. Run with --help for the flags; --kubeconfig (or
// KUBECONFIG, or the in-cluster config) chooses the cluster; --version prints the build.
package main

import (
	"flag"
	"fmt"
	"os"

	// Mozilla's CA roots compiled in, used only when the system has none: the release image holds
	// the binary alone (no /etc/ssl), and DingTalk is reached over https.
	_ "golang.org/x/crypto/x509roots/fallback"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/logcap"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

func main() {
	os.Exit(run())
}

func run() int {
	// flag.CommandLine already holds controller-runtime's --kubeconfig.
	showVersion := flag.CommandLine.Bool("version", false, "Print the version and exit.")
	opts, err := operator.Parse(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	if *showVersion {
		fmt.Println("dingtalk-token-operator", version.String())
		return 0
	}
	// Capped below the V-levels at which client-go logs request and response bodies (Secrets among
	// them), whatever --zap-log-level says; also for the caches' own calls outside reconciles.
	logger := logcap.Cap(zap.New(zap.UseFlagOptions(&opts.Zap)))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger) // client-go's own messages, in the same format
	log := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Failed to load the cluster configuration (set --kubeconfig or KUBECONFIG, or run in a pod)")
		return 1
	}
	mgr, err := operator.NewManager(cfg, opts)
	if err != nil {
		log.Error(err, "Failed to set up the manager")
		return 1
	}
	log.Info("Starting manager",
		"version", version.Version,
		"dingtalkEndpoint", opts.DingTalkEndpoint,
		"watchNamespaces", opts.WatchNamespaces,
		"operatorNamespace", opts.Namespace(),
		"leaderElection", opts.LeaderElection,
		"rolloutRestart", opts.EnableRolloutRestart,
		"streamUnhandledEvents", opts.StreamUnhandledEvents,
		"metricsBindAddress", opts.MetricsBindAddress,
		"metricsSecure", opts.MetricsSecure)
	// SIGTERM or SIGINT stops the manager: it releases the leader Lease and waits for running
	// reconciles; a second signal exits at once.
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		return 1
	}
	log.Info("Stopped manager")
	return 0
}
