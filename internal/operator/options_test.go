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

package operator

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

func TestParse(t *testing.T) {
	for name, tc := range map[string]struct {
		args    []string // command line
		wantErr string   // substring of the error; "" for success
		check   func(*testing.T, Options)
	}{
		"defaults": {
			check: func(t *testing.T, o Options) {
				if o.DingTalkEndpoint != "https://api.dingtalk.com" || o.LeaderElection || !o.MetricsSecure ||
					o.MetricsBindAddress != "0" || o.HealthProbeBindAddress != ":8081" || len(o.WatchNamespaces) != 0 ||
					o.PprofBindAddress != "0" || o.WatchLabelSelector != "" || o.LeaderElectionID != LeaderElectionID ||
					o.StreamUnhandledEvents != "redeliver" ||
					o.KubeAPIQPS != 0 || o.RESTConfig(&rest.Config{QPS: -1}).QPS != -1 {
					t.Errorf("defaults = %+v", o)
				}
			},
		},
		"every flag": {
			args: []string{
				"--dingtalk-endpoint=https://proxy.example.com/dingtalk/", "--watch-namespaces= apps, crm ,apps",
				"--enable-rollout-restart", "--leader-elect", "--leader-election-namespace=ops",
				"--metrics-bind-address=:8443", "--health-probe-bind-address=:9440", "--max-concurrent-reconciles=8",
				"--dingtalk-qps=5", "--dingtalk-burst=10", "--dingtalk-timeout=3s", "--zap-log-level=debug",
				"--pprof-bind-address=127.0.0.1:6060", "--watch-label-selector=shard in (a,b),!legacy",
				"--leader-election-id=shard-a.dingtalk.tokens.dev", "--kube-api-qps=50",
				"--stream-unhandled-events=acknowledge",
			},
			check: func(t *testing.T, o Options) {
				if o.DingTalkEndpoint != "https://proxy.example.com/dingtalk" {
					t.Errorf("endpoint = %q, want the trailing slash trimmed", o.DingTalkEndpoint)
				}
				if !slices.Equal(o.WatchNamespaces, []string{"apps", "crm"}) {
					t.Errorf("namespaces = %q", o.WatchNamespaces)
				}
				if c := o.RESTConfig(&rest.Config{}); c.QPS != 50 || c.Burst != 100 {
					t.Errorf("--kube-api-qps=50: QPS %v, burst %d; want 50 and twice that", c.QPS, c.Burst)
				}
				sel, err := o.TokenSelector()
				if err != nil || !sel.Matches(labels.Set{"shard": "a"}) || sel.Matches(labels.Set{"shard": "c"}) ||
					sel.Matches(labels.Set{"shard": "a", "legacy": "x"}) {
					t.Errorf("--watch-label-selector parsed as %v (%v)", sel, err)
				}
				if !o.EnableRolloutRestart || !o.LeaderElection || o.LeaderElectionNamespace != "ops" ||
					o.MetricsBindAddress != ":8443" || o.HealthProbeBindAddress != ":9440" ||
					o.MaxConcurrentReconciles != 8 || o.DingTalkQPS != 5 || o.DingTalkBurst != 10 || o.DingTalkTimeout.Seconds() != 3 ||
					o.PprofBindAddress != "127.0.0.1:6060" || o.LeaderElectionID != "shard-a.dingtalk.tokens.dev" ||
					o.StreamUnhandledEvents != "acknowledge" {
					t.Errorf("options = %+v", o)
				}
			},
		},
		"loopback http allowed":  {args: []string{"--dingtalk-endpoint=http://127.0.0.1:8080"}},
		"localhost http allowed": {args: []string{"--dingtalk-endpoint=http://localhost:8080"}},
		"ipv6 loopback allowed":  {args: []string{"--dingtalk-endpoint=http://[::1]:8080"}},
		"empty namespaces: all":  {args: []string{"--watch-namespaces="}},
		"http refused":           {args: []string{"--dingtalk-endpoint=http://api.dingtalk.com"}, wantErr: "--dingtalk-endpoint"},
		"http on a LAN refused":  {args: []string{"--dingtalk-endpoint=http://10.0.0.1"}, wantErr: "https"},
		"loopback lookalike":     {args: []string{"--dingtalk-endpoint=http://127.0.0.1.example.com"}, wantErr: "https"},
		"other scheme refused":   {args: []string{"--dingtalk-endpoint=ftp://api.dingtalk.com"}, wantErr: "--dingtalk-endpoint"},
		"relative refused":       {args: []string{"--dingtalk-endpoint=api.dingtalk.com"}, wantErr: "--dingtalk-endpoint"},
		"user info refused":      {args: []string{"--dingtalk-endpoint=https://user:pass@api.dingtalk.com"}, wantErr: "user info"},
		"query refused":          {args: []string{"--dingtalk-endpoint=https://api.dingtalk.com?x=1"}, wantErr: "query"},
		"bad namespace":          {args: []string{"--watch-namespaces=Apps"}, wantErr: "--watch-namespaces"},
		"bad lease namespace":    {args: []string{"--leader-election-namespace=a_b"}, wantErr: "--leader-election-namespace"},
		"bad lease name":         {args: []string{"--leader-election-id=Shard_A"}, wantErr: "--leader-election-id"},
		"negative api qps":       {args: []string{"--kube-api-qps=-1"}, wantErr: "--kube-api-qps"},
		"bad selector":           {args: []string{"--watch-label-selector=shard in a"}, wantErr: "--watch-label-selector"},
		"bad operator namespace": {args: []string{"--operator-namespace=A"}, wantErr: "--operator-namespace"},
		"zero reconciles":        {args: []string{"--max-concurrent-reconciles=0"}, wantErr: "--max-concurrent-reconciles"},
		"negative qps":           {args: []string{"--dingtalk-qps=-1"}, wantErr: "--dingtalk-qps"},
		"zero burst":             {args: []string{"--dingtalk-burst=0"}, wantErr: "--dingtalk-burst"},
		"zero timeout":           {args: []string{"--dingtalk-timeout=0s"}, wantErr: "--dingtalk-timeout"},
		"stray argument":         {args: []string{"start"}, wantErr: "unexpected arguments"},
		"unknown stream answer":  {args: []string{"--stream-unhandled-events=drop"}, wantErr: "--stream-unhandled-events"},
	} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("manager", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o, err := Parse(fs, tc.args)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// TestNamespace: the operator's namespace (where the digest key Secret lives) comes from
// --operator-namespace, else $POD_NAMESPACE, else --leader-election-namespace, else "default"
// out of a cluster.
func TestNamespace(t *testing.T) {
	for name, tc := range map[string]struct {
		flag, env, lease string // --operator-namespace, $POD_NAMESPACE, --leader-election-namespace
		want             string
	}{
		"flag wins":           {flag: "ops", env: "pod", lease: "lease", want: "ops"},
		"POD_NAMESPACE":       {env: "pod", lease: "lease", want: "pod"},
		"leader election":     {lease: "lease", want: "lease"},
		"out of cluster":      {want: "default"},
		"blank POD_NAMESPACE": {env: " ", lease: "lease", want: "lease"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			o := Options{OperatorNamespace: tc.flag, LeaderElectionNamespace: tc.lease}
			if got := o.Namespace(); got != tc.want {
				t.Errorf("Namespace() = %q, want %q", got, tc.want)
			}
		})
	}
}
