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
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	dingtalkv1alpha1 "github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/dingtalk"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/eventrecorder"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/logcap"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/stream"

	// Registers the operator's metrics on controller-runtime's registry.
	_ "github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

// EventSource is the reporting controller of the operator's events.
const EventSource = "dingtalk-token-operator"

// gracefulShutdownTimeout bounds the wait for running reconciles after SIGTERM. It covers the
// longest a running pass can still take (a DingTalk call in flight, then storing a User token's
// rotated refresh token, then the status write): the leader lease is released only after it, so a
// new leader never uses a refresh token this process is still storing. The Deployment's
// terminationGracePeriodSeconds is longer.
const gracefulShutdownTimeout = controllers.ShutdownBudget

// Scheme holds the kinds the operator reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(dingtalkv1alpha1.AddToScheme(s))
	return s
}

// Hooks change how NewManager wires what no flag sets, for programs that embed the manager (the
// test harness internal/testenv, the demo): the shipped binary uses none, so every embedder runs
// the same manager and reconciler with, at most, these seams changed.
type Hooks struct {
	// Logger replaces controller-runtime's global logger for this manager (zero: the global one).
	Logger logr.Logger
	// Clock is the reconciler's clock (nil: the real clock).
	Clock clock.Clock
	// WrapClient wraps the client the reconciler reads and writes with: fault injection.
	WrapClient func(client.Client) client.Client
	// WrapAPIReader wraps the reconciler's uncached reader (credentials Secrets): read counting.
	WrapAPIReader func(client.Reader) client.Reader
	// SkipNameValidation lets several managers with the operator's controller run in one process.
	SkipNameValidation bool
}

// NewManager builds the manager from validated options: caches restricted to managed Secrets
// and the watched namespaces, the DingTalkToken (and, serving every namespace, the
// ClusterDingTalkToken) reconciler, the DingTalk Stream connections of Stream-sourced suite
// tickets (leader only), metrics, probes and leader election.
// Start it with mgr.Start(ctx); it returns when ctx ends and the running reconciles finish.
// Hooks, at most one, change the seams an embedding program needs (see Hooks).
func NewManager(cfg *rest.Config, o Options, hooks ...Hooks) (ctrl.Manager, error) {
	var h Hooks
	if len(hooks) > 1 {
		return nil, errors.New("NewManager takes at most one Hooks")
	}
	if len(hooks) == 1 {
		h = hooks[0]
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	metricsOpts := metricsserver.Options{
		BindAddress:   o.MetricsBindAddress,
		SecureServing: o.MetricsSecure,
		CertDir:       o.MetricsCertPath,
		CertName:      o.MetricsCertName,
		KeyName:       o.MetricsCertKey,
	}
	if !o.EnableHTTP2 {
		metricsOpts.TLSOpts = append(metricsOpts.TLSOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if o.MetricsSecure {
		// Every scrape is authenticated (TokenReview) and authorized (SubjectAccessReview for get
		// on /metrics) by the API server, as kubebuilder scaffolds it.
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	cfg = o.RESTConfig(cfg)
	tokens, err := o.TokenSelector()
	if err != nil {
		return nil, fmt.Errorf("--watch-label-selector: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        Scheme(),
		Cache:                         controllers.CacheOptions(o.WatchNamespaces, tokens),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		PprofBindAddress:              o.PprofBindAddress,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true, // safe: the process exits as soon as the manager stops
		GracefulShutdownTimeout:       ptrTo(gracefulShutdownTimeout),
		// Every reconcile's logger derives from the manager's: capped below the levels at which
		// client-go logs request bodies (a Secret's data among them), whatever the embedder gives.
		Logger:     logcap.Cap(h.logger()),
		Controller: config.Controller{SkipNameValidation: ptrTo(h.SkipNameValidation)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}

	dt, err := dingtalk.New(dingtalk.Options{
		BaseURL: o.DingTalkEndpoint,
		Timeout: o.DingTalkTimeout,
		QPS:     o.DingTalkQPS,
		Burst:   o.DingTalkBurst,
	})
	if err != nil {
		return nil, fmt.Errorf("--dingtalk-endpoint: %w", err)
	}
	digestKey, err := loadDigestKey(mgr, o.Namespace())
	if err != nil {
		return nil, err
	}
	// One machinery for every kind: objects of any kind with equal credentials share one call.
	machinery := controllers.NewMachinery(h.clock(), dt, o.DingTalkEndpoint, digestKey)
	// DingTalk Stream mode: one connection per suite whose tokens take pushed suite tickets, held
	// by the leader only (the Hub is a leader-election runnable).
	hub := stream.NewHub(machinery.TicketSink(), stream.HubOptions{
		Client: stream.Options{
			Logger:          mgr.GetLogger().WithName("stream"),
			UnhandledEvents: stream.UnhandledEvents(o.StreamUnhandledEvents),
		},
		OnState: machinery.TicketStreamChanged,
		// Opening a connection is a DingTalk call like the token calls: the same client, so the
		// same --dingtalk-qps, --dingtalk-burst and --dingtalk-timeout.
		NewOpener: func(endpoint string) (stream.Opener, error) {
			if endpoint != o.DingTalkEndpoint {
				return nil, fmt.Errorf("DingTalk Stream endpoint %q is not --dingtalk-endpoint", endpoint)
			}
			return dt, nil
		},
	})
	machinery.UseTicketStream(hub)
	if err := mgr.Add(hub); err != nil {
		return nil, fmt.Errorf("adding the DingTalk Stream connections: %w", err)
	}
	// Events are written from a bounded queue (internal/eventrecorder), not through the manager's
	// broadcaster, which keeps every Event for minutes.
	eventsClient, err := eventsv1client.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return nil, fmt.Errorf("creating the Events client: %w", err)
	}
	recorder := eventrecorder.New(mgr.GetScheme(), eventrecorder.APISink(eventsClient), EventSource, clock.RealClock{},
		mgr.GetLogger().WithName("events"))
	if err := mgr.Add(recorder); err != nil {
		return nil, fmt.Errorf("adding the Event recorder: %w", err)
	}
	c, reader := h.wrapClient(mgr.GetClient()), h.wrapAPIReader(mgr.GetAPIReader())
	r := &controllers.DingTalkTokenReconciler{
		Client:                  c,
		APIReader:               reader,
		Recorder:                recorder,
		WatchNamespaces:         o.WatchNamespaces,
		EnableRolloutRestart:    o.EnableRolloutRestart,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		Machinery:               machinery,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the DingTalkToken controller: %w", err)
	}
	// ClusterDingTalkTokens write into any namespace: only an operator serving every namespace
	// has them (a namespaced operator has neither the RBAC nor the cache for it).
	if len(o.WatchNamespaces) == 0 {
		cr := &controllers.ClusterDingTalkTokenReconciler{
			Client:                  c,
			APIReader:               reader,
			Recorder:                recorder,
			MaxConcurrentReconciles: o.MaxConcurrentReconciles,
			Machinery:               machinery,
		}
		if err := cr.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("setting up the ClusterDingTalkToken controller: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the health check: %w", err)
	}
	// Ready once the caches have synced: a replica that cannot list its Secrets is not ready.
	if err := mgr.AddReadyzCheck("caches", cachesSynced(mgr)); err != nil {
		return nil, fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr, nil
}

// digestKeyWait bounds the wait for the digest key at start: the API server may be starting too.
const digestKeyWait = time.Minute

// loadDigestKey reads (on the first start: creates) the installation's digest key in the
// operator's namespace, retrying while the API server cannot be reached. It runs before the
// manager starts (no controller may compute a digest without it), through the manager's uncached
// reader and its client, whose writes go to the API server directly.
func loadDigestKey(mgr ctrl.Manager, namespace string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), digestKeyWait)
	defer cancel()
	var key []byte
	var last error
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		key, last = controllers.LoadDigestKey(ctx, mgr.GetAPIReader(), mgr.GetClient(), namespace)
		return last == nil, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return nil, fmt.Errorf("the digest key (--operator-namespace %s): %w", namespace, last)
	}
	return key, nil
}

// cachesSynced is a readiness check that passes once the manager's caches have synced.
func cachesSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches have not synced yet")
		}
		return nil
	}
}

func (h Hooks) logger() logr.Logger {
	if h.Logger.GetSink() == nil {
		return ctrl.Log
	}
	return h.Logger
}

func (h Hooks) clock() clock.Clock {
	if h.Clock == nil {
		return clock.RealClock{}
	}
	return h.Clock
}

func (h Hooks) wrapClient(c client.Client) client.Client {
	if h.WrapClient == nil {
		return c
	}
	return h.WrapClient(c)
}

func (h Hooks) wrapAPIReader(r client.Reader) client.Reader {
	if h.WrapAPIReader == nil {
		return r
	}
	return h.WrapAPIReader(r)
}

func ptrTo[T any](v T) *T { return &v }
