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

// Package metrics defines the operator's Prometheus metrics on controller-runtime's registry.
// Labels are bounded: namespace/name/kind/type of a token, a condition status or reason, an
// endpoint path, a result class and a Stream frame kind. No token or credential ever becomes a label value.
package metrics

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/version"
)

// The per-token series (expiry, next refresh, conditions, failures) come from tokens, one small
// record per token (GaugeVecs would keep about 2.7 KiB of label pairs per token), added to what
// controller-runtime's registry gathers (registry).
var tokens = newTokenCollector()

// registry is controller-runtime's registry (the metrics endpoint serves what it gathers) with the
// per-token families added when it is gathered: they are built as families directly
// (tokenCollector.families), not collected one metric per series. Everything else is the
// registry's: collectors register there as before.
type registry struct {
	metrics.RegistererGatherer
	tokens *tokenCollector
}

func (r registry) Gather() ([]*dto.MetricFamily, error) {
	fams, err := r.RegistererGatherer.Gather()
	fams = append(fams, r.tokens.families()...)
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return fams, err
}

var (
	// ClusterTokenNamespaces counts a ClusterDingTalkToken's namespaces by state: matched,
	// provisioned, failed.
	ClusterTokenNamespaces = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dingtalk_cluster_token_namespaces",
		Help: "Namespaces of a ClusterDingTalkToken by state: matched (selected), provisioned (holding the current token), failed.",
	}, []string{"name", "state"})

	// buildInfo is 1 on every replica, labelled with the binary's version: Prometheus scrapes no
	// replica when it is absent (the DingTalkTokenOperatorDown alert), and the dashboard picks the
	// operator's jobs by it.
	buildInfo = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "dingtalk_token_operator_build_info",
		Help:        "Always 1, labelled with the version and commit of the dingtalk-token-operator binary.",
		ConstLabels: prometheus.Labels{"version": version.Version, "commit": version.Commit},
	}, func() float64 { return 1 })

	// EventsDropped counts the Events not recorded because the queue of Events waiting to be
	// written was full (internal/eventrecorder).
	EventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dingtalk_events_dropped_total",
		Help: "Events the operator did not record because too many were waiting to be written to the API server.",
	})

	// APIRequests counts DingTalk API calls by endpoint path and result ("success" or an error class).
	APIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dingtalk_api_requests_total",
		Help: "DingTalk API requests by endpoint and result (success or the error class).",
	}, []string{"endpoint", "result"})

	// APIRequestDuration observes DingTalk API call latency by endpoint path.
	APIRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "dingtalk_api_request_duration_seconds",
		Help:    "Latency of DingTalk API requests by endpoint.",
		Buckets: prometheus.DefBuckets,
	}, []string{"endpoint"})
)

func init() {
	metrics.Registry = registry{metrics.Registry, tokens}
	metrics.Registry.MustRegister(buildInfo, ClusterTokenNamespaces, EventsDropped, APIRequests, APIRequestDuration)
}

// ObserveAPIRequest records one DingTalk call.
func ObserveAPIRequest(endpoint, result string, took time.Duration) {
	APIRequests.WithLabelValues(endpoint, result).Inc()
	APIRequestDuration.WithLabelValues(endpoint).Observe(took.Seconds())
}

// SetToken records the series of a DingTalkToken from the status its pass wrote: expiry, next
// refresh, the Ready, Refreshed and TicketStream conditions, the failed attempts and the last
// failure. A time the status does not hold has no series.
func SetToken(namespace, name, tokenType string, st *v1alpha1.TokenStatus) {
	tokens.set(namespace, name, tokenType, st)
}

// DeleteToken removes every series of a deleted DingTalkToken.
func DeleteToken(namespace, name string) { tokens.delete(namespace, name) }

// SetClusterToken records the series of a ClusterDingTalkToken as SetToken does, with an empty
// namespace label (one series per ClusterDingTalkToken, never per namespace), and its namespace
// counts.
func SetClusterToken(name, tokenType string, st *v1alpha1.TokenStatus, matched, provisioned, failed int32) {
	tokens.set("", name, tokenType, st)
	ClusterTokenNamespaces.WithLabelValues(name, "matched").Set(float64(matched))
	ClusterTokenNamespaces.WithLabelValues(name, "provisioned").Set(float64(provisioned))
	ClusterTokenNamespaces.WithLabelValues(name, "failed").Set(float64(failed))
}

// DeleteClusterToken removes every series of a deleted ClusterDingTalkToken.
func DeleteClusterToken(name string) {
	tokens.delete("", name)
	ClusterTokenNamespaces.DeletePartialMatch(prometheus.Labels{"name": name})
}
