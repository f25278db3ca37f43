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

// Package operator turns the manager's command-line flags into a running controller-runtime
// manager. cmd/main.go and the demo (hack/demo, through internal/testenv) share it, so the demo
// runs exactly what ships.
package operator

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"
)

// LeaderElectionID names the Lease the operator's replicas compete for. It is specific to this
// project so that it never collides with another operator's lease in the same namespace.
const LeaderElectionID = "dingtalk-token-operator.dingtalk.tokens.dev"

// Options are the manager's settings, one field per flag.
type Options struct {
	// DingTalkEndpoint is DingTalk's API root. https only, except for a loopback host (the
	// simulator). It can be set here and nowhere else: a DingTalkToken cannot name an endpoint.
	DingTalkEndpoint string
	// DingTalkQPS and DingTalkBurst limit the calls to DingTalk on the client side.
	DingTalkQPS   float64
	DingTalkBurst int
	// DingTalkTimeout bounds each call to DingTalk.
	DingTalkTimeout time.Duration

	// KubeAPIQPS and KubeAPIBurst limit the requests to the API server on the client side. Zero
	// QPS sets no client-side limit (controller-runtime's default): the API server's priority and
	// fairness shares its capacity. Zero burst is twice the QPS.
	KubeAPIQPS   float64
	KubeAPIBurst int

	// WatchNamespaces restricts the operator (and its caches) to these namespaces; empty means all.
	WatchNamespaces []string
	// WatchLabelSelector restricts the DingTalkTokens and ClusterDingTalkTokens the operator
	// serves (and caches) to those its labels match; empty means all. Several operators with
	// disjoint selectors, each with its own LeaderElectionID, split one cluster.
	WatchLabelSelector string
	// EnableRolloutRestart lets DingTalkTokens restart the workloads in spec.rolloutRestartTargets.
	EnableRolloutRestart bool
	// MaxConcurrentReconciles is how many DingTalkTokens are reconciled at once.
	MaxConcurrentReconciles int
	// StreamUnhandledEvents is the answer to the DingTalk Stream events the operator does not
	// handle (every eventType but suite_ticket): "redeliver" (LATER, so that another Stream client
	// of the app, such as the vendor's own backend, receives them when DingTalk delivers them
	// again) or "acknowledge" (SUCCESS, when the operator is the app's only Stream client).
	StreamUnhandledEvents string

	// LeaderElection makes replicas elect one active manager through a Lease.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease. Empty: the namespace the pod runs in.
	LeaderElectionNamespace string
	// LeaderElectionID names the Lease (default LeaderElectionID): one per operator Deployment.
	LeaderElectionID string
	// OperatorNamespace is the operator's own namespace, where the installation's digest key
	// Secret lives. Empty: $POD_NAMESPACE, else LeaderElectionNamespace, else the namespace of the
	// pod's service account, else "default" (see Namespace).
	OperatorNamespace string

	// MetricsBindAddress serves /metrics; "0" disables it.
	MetricsBindAddress string
	// MetricsSecure serves metrics over HTTPS with authentication and authorization.
	MetricsSecure bool
	// MetricsCertPath, MetricsCertName and MetricsCertKey locate a serving certificate; without
	// one the metrics server makes a self-signed certificate in memory.
	MetricsCertPath string
	MetricsCertName string
	MetricsCertKey  string
	// EnableHTTP2 serves metrics over HTTP/2 too (off by default: HTTP/2 Stream Cancellation and
	// Rapid Reset CVEs).
	EnableHTTP2 bool

	// HealthProbeBindAddress serves /healthz and /readyz; "0" disables it.
	HealthProbeBindAddress string
	// PprofBindAddress serves Go's net/http/pprof profiles, unauthenticated; "0" (the default)
	// disables it. For profiling on a loopback address only.
	PprofBindAddress string

	// Zap configures the logger (controller-runtime's --zap-* flags).
	Zap zap.Options
}

// DefaultOptions are the flag defaults.
func DefaultOptions() Options {
	return Options{
		DingTalkEndpoint:        dingtalk.DefaultBaseURL,
		DingTalkQPS:             20,
		DingTalkBurst:           40,
		DingTalkTimeout:         dingtalk.DefaultTimeout,
		MaxConcurrentReconciles: 4,
		StreamUnhandledEvents:   string(stream.RedeliverUnhandled),
		LeaderElectionID:        LeaderElectionID,
		MetricsBindAddress:      "0",
		MetricsSecure:           true,
		MetricsCertName:         "tls.crt",
		MetricsCertKey:          "tls.key",
		HealthProbeBindAddress:  ":8081",
		PprofBindAddress:        "0",
	}
}

// BindFlags registers every flag on fs, with o's current values as defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.DingTalkEndpoint, "dingtalk-endpoint", o.DingTalkEndpoint,
		"DingTalk API root. Must be https, except for a loopback host such as the simulator's http://127.0.0.1:PORT.")
	fs.Float64Var(&o.DingTalkQPS, "dingtalk-qps", o.DingTalkQPS,
		"Client-side limit of calls per second to DingTalk, shared by all DingTalkTokens.")
	fs.IntVar(&o.DingTalkBurst, "dingtalk-burst", o.DingTalkBurst,
		"Calls to DingTalk allowed in a burst above --dingtalk-qps.")
	fs.DurationVar(&o.DingTalkTimeout, "dingtalk-timeout", o.DingTalkTimeout,
		"Timeout of each call to DingTalk.")
	fs.Float64Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS,
		"Client-side limit of requests per second to the Kubernetes API server; 0: none (the API server's priority and fairness applies).")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst,
		"Requests to the API server allowed in a burst above --kube-api-qps; 0: twice --kube-api-qps.")
	fs.Func("watch-namespaces",
		"Comma-separated namespaces to watch; empty watches all namespaces. Restricts the caches too.",
		func(v string) error {
			o.WatchNamespaces = splitList(v)
			return nil
		})
	fs.StringVar(&o.WatchLabelSelector, "watch-label-selector", o.WatchLabelSelector,
		"Label selector of the DingTalkTokens and ClusterDingTalkTokens this operator serves, e.g. "+
			"'sharding.dingtalk.tokens.dev/shard=shard1' or '!sharding.dingtalk.tokens.dev/shard'; empty serves all. "+
			"Operators with disjoint selectors (and their own --leader-election-id) split a cluster.")
	fs.BoolVar(&o.EnableRolloutRestart, "enable-rollout-restart", o.EnableRolloutRestart,
		"Restart the workloads listed in spec.rolloutRestartTargets when a token changes "+
			"(needs the RBAC of config/components/rollout-restart).")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", o.MaxConcurrentReconciles,
		"How many DingTalkTokens are reconciled at once.")
	fs.StringVar(&o.StreamUnhandledEvents, "stream-unhandled-events", o.StreamUnhandledEvents,
		"Answer to the DingTalk Stream events the operator does not handle (every eventType but suite_ticket): "+
			"redeliver (LATER: DingTalk delivers them again, so that another Stream client of the suite, such as your own backend, "+
			"receives them) or acknowledge (SUCCESS: only when the operator is the suite's only Stream client).")
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection,
		"Elect one active replica through a Lease (--leader-election-id).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID,
		"Name of the leader election Lease: each operator Deployment sharing a namespace needs its own.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace,
		"Namespace of the leader election Lease. Default: the namespace the pod runs in (required out of cluster).")
	fs.StringVar(&o.OperatorNamespace, "operator-namespace", o.OperatorNamespace,
		"The operator's own namespace: it keeps the installation's digest key Secret "+controllers.DigestKeySecretName+" there. "+
			"Default: $POD_NAMESPACE, else --leader-election-namespace, else the pod's namespace, else default.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress,
		"Address of the metrics endpoint, e.g. :8443 (HTTPS) or :8080 (with --metrics-secure=false); 0 disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure,
		"Serve metrics over HTTPS, allowing only callers the API server authenticates and authorizes "+
			"(get on the non-resource URL /metrics).")
	fs.StringVar(&o.MetricsCertPath, "metrics-cert-path", o.MetricsCertPath,
		"Directory holding the metrics serving certificate; empty: a self-signed certificate made in memory.")
	fs.StringVar(&o.MetricsCertName, "metrics-cert-name", o.MetricsCertName, "File name of the metrics serving certificate.")
	fs.StringVar(&o.MetricsCertKey, "metrics-cert-key", o.MetricsCertKey, "File name of the metrics serving key.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2,
		"Serve metrics over HTTP/2 as well (off by default because of the HTTP/2 Rapid Reset CVEs).")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", o.HealthProbeBindAddress,
		"Address of the /healthz and /readyz probes; 0 disables them.")
	fs.StringVar(&o.PprofBindAddress, "pprof-bind-address", o.PprofBindAddress,
		"Address serving Go's pprof profiles (/debug/pprof/), without authentication: bind it to loopback, "+
			"e.g. 127.0.0.1:6060, and only while profiling; 0 disables it.")
	o.Zap.BindFlags(fs)
}

// Validate checks the options and normalises the endpoint. Every error names its flag.
func (o *Options) Validate() error {
	var errs []error
	if ep, err := dingtalk.ValidateBaseURL(o.DingTalkEndpoint); err != nil {
		errs = append(errs, fmt.Errorf("--dingtalk-endpoint: %w", err))
	} else {
		o.DingTalkEndpoint = ep
	}
	if o.DingTalkQPS <= 0 {
		errs = append(errs, errors.New("--dingtalk-qps must be greater than 0"))
	}
	if o.DingTalkBurst < 1 {
		errs = append(errs, errors.New("--dingtalk-burst must be at least 1"))
	}
	if o.DingTalkTimeout <= 0 {
		errs = append(errs, errors.New("--dingtalk-timeout must be greater than 0"))
	}
	if o.KubeAPIQPS < 0 {
		errs = append(errs, errors.New("--kube-api-qps must be 0 (no client-side limit) or more"))
	}
	if o.KubeAPIBurst < 0 {
		errs = append(errs, errors.New("--kube-api-burst must be 0 (twice the QPS) or more"))
	}
	if o.MaxConcurrentReconciles < 1 {
		errs = append(errs, errors.New("--max-concurrent-reconciles must be at least 1"))
	}
	if _, err := stream.ParseUnhandledEvents(o.StreamUnhandledEvents); err != nil {
		errs = append(errs, fmt.Errorf("--stream-unhandled-events: %w", err))
	}
	for _, ns := range o.WatchNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--watch-namespaces: %q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
	}
	if _, err := o.TokenSelector(); err != nil {
		errs = append(errs, fmt.Errorf("--watch-label-selector: %w", err))
	}
	if msgs := validation.IsDNS1123Subdomain(o.LeaderElectionID); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--leader-election-id: %q is not a Lease name: %s", o.LeaderElectionID, strings.Join(msgs, "; ")))
	}
	if o.LeaderElectionNamespace != "" {
		if msgs := validation.IsDNS1123Label(o.LeaderElectionNamespace); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--leader-election-namespace: %q is not a namespace name", o.LeaderElectionNamespace))
		}
	}
	if o.OperatorNamespace != "" {
		if msgs := validation.IsDNS1123Label(o.OperatorNamespace); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--operator-namespace: %q is not a namespace name", o.OperatorNamespace))
		}
	}
	return errors.Join(errs...)
}

// RESTConfig is cfg with the client-side limit of --kube-api-qps and --kube-api-burst (cfg itself
// when no limit is set).
func (o *Options) RESTConfig(cfg *rest.Config) *rest.Config {
	if o.KubeAPIQPS <= 0 {
		return cfg
	}
	out := rest.CopyConfig(cfg)
	out.QPS = float32(o.KubeAPIQPS)
	out.Burst = o.KubeAPIBurst
	if out.Burst == 0 {
		out.Burst = int(2*o.KubeAPIQPS + 0.5)
	}
	out.Burst = max(out.Burst, 1)
	return out
}

// TokenSelector is WatchLabelSelector parsed (it selects everything when empty).
func (o *Options) TokenSelector() (labels.Selector, error) {
	return labels.Parse(o.WatchLabelSelector)
}

// Parse parses args (without the program name) into options and validates them.
// Flags registered on fs beforehand (e.g. --kubeconfig) are parsed too.
func Parse(fs *flag.FlagSet, args []string) (Options, error) {
	o := DefaultOptions()
	o.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return o, o.Validate()
}

// serviceAccountNamespaceFile holds the namespace of the pod's service account, in a pod.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Namespace is the operator's own namespace: --operator-namespace, else $POD_NAMESPACE, else
// --leader-election-namespace, else the pod's (its service account's) namespace, else "default"
// (a manager run outside a cluster, against a development cluster).
func (o *Options) Namespace() string {
	if o.OperatorNamespace != "" {
		return o.OperatorNamespace
	}
	if ns := strings.TrimSpace(os.Getenv("POD_NAMESPACE")); ns != "" {
		return ns
	}
	if o.LeaderElectionNamespace != "" {
		return o.LeaderElectionNamespace
	}
	if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// splitList splits a comma-separated list, trimming blanks and dropping empty and repeated items.
func splitList(v string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}
