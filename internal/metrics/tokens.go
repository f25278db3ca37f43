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

package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// The values of the kind label: a DingTalkToken has a namespace, a ClusterDingTalkToken none.
const (
	KindDingTalkToken        = "DingTalkToken"
	KindClusterDingTalkToken = "ClusterDingTalkToken"
)

var (
	tokenLabels    = []string{"namespace", "name", "kind"}
	typedLabels    = []string{"namespace", "name", "kind", "type"}
	conditionLabel = []string{"namespace", "name", "kind", "condition"}

	tokenExpirationDesc = prometheus.NewDesc("dingtalk_token_expiration_timestamp_seconds",
		"Unix time at which the access token held in the target Secret expires.", typedLabels, nil)
	tokenRefreshDesc = prometheus.NewDesc("dingtalk_token_refresh_timestamp_seconds",
		"Unix time at which the next refresh of the access token is due.", typedLabels, nil)
	tokenReadyDesc = prometheus.NewDesc("dingtalk_token_ready_status",
		"Status of the Ready condition of a token: 1 for the current condition value, 0 for the others.", conditionLabel, nil)
	tokenReadyReasonDesc = prometheus.NewDesc("dingtalk_token_ready_reason",
		"Reason of the Ready condition of a token: 1, on the series of the current reason only.",
		[]string{"namespace", "name", "kind", "reason"}, nil)
	tokenRefreshedDesc = prometheus.NewDesc("dingtalk_token_refreshed_status",
		"Status of the Refreshed condition of a token (the outcome of the last refresh attempt): 1 for the current condition value, 0 for the others.",
		conditionLabel, nil)
	tokenFailedAttemptsDesc = prometheus.NewDesc("dingtalk_token_failed_attempts",
		"Consecutive failed refresh attempts of a token; 0 after a success.", tokenLabels, nil)
	tokenLastFailureDesc = prometheus.NewDesc("dingtalk_token_last_failure_timestamp_seconds",
		"Unix time of the last failed refresh attempt of a token, labelled with its reason; no series after a success.",
		[]string{"namespace", "name", "kind", "reason"}, nil)
	tokenTicketStreamDesc = prometheus.NewDesc("dingtalk_token_ticket_stream_status",
		"Status of the TicketStream condition of a token whose suite tickets come from DingTalk Stream mode: 1 for the current condition value, 0 for the others.",
		conditionLabel, nil)
)

// conditionValues are the values of the condition label of the *_status metrics, each a series.
var conditionValues = [...]metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// Indexes of a condition in conditionValues, for what a token's status does not hold.
const (
	// noCondition: the condition is absent, or none of conditionValues: every series is 0.
	noCondition = uint8(255)
	// noSeries: the condition is absent and its metric has no series (TicketStream, on a token
	// whose suite tickets do not come from Stream mode).
	noSeries = uint8(254)
)

// tokenKey names a token: a ClusterDingTalkToken has an empty namespace.
type tokenKey struct{ namespace, name string }

// kind is the kind label of the token.
func (k tokenKey) kind() string {
	if k.namespace == "" {
		return KindClusterDingTalkToken
	}
	return KindDingTalkToken
}

// tokenRecord is what the metrics say of one token, taken from its status: Unix seconds (0: no
// series), indexes in conditionValues, the reasons of Ready and of the last failure.
type tokenRecord struct {
	typ                            string
	readyReason, failureReason     string
	expires, refresh, lastFailure  int64
	failedAttempts                 int32
	ready, refreshed, ticketStream uint8
}

// tokenCollector exports the per-token series from one record per token, built at scrape time.
type tokenCollector struct {
	mu     sync.RWMutex
	tokens map[tokenKey]tokenRecord
}

func newTokenCollector() *tokenCollector {
	return &tokenCollector{tokens: map[tokenKey]tokenRecord{}}
}

// set records a token's status, replacing what was recorded of it.
func (c *tokenCollector) set(namespace, name, tokenType string, st *v1alpha1.TokenStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := tokenRecord{
		typ:            tokenType,
		expires:        unix(st.ExpiresAt),
		refresh:        unix(st.RefreshTime),
		lastFailure:    unix(st.LastFailureTime),
		failedAttempts: st.FailedAttempts,
		ready:          conditionIndex(st.Conditions, v1alpha1.ConditionReady, noCondition),
		refreshed:      conditionIndex(st.Conditions, v1alpha1.ConditionRefreshed, noCondition),
		ticketStream:   conditionIndex(st.Conditions, v1alpha1.ConditionTicketStream, noSeries),
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
		r.readyReason = c.Reason
	}
	if r.lastFailure != 0 {
		r.failureReason = st.LastFailureReason
	}
	c.tokens[tokenKey{namespace: namespace, name: name}] = r
}

func unix(t *metav1.Time) int64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return t.Unix()
}

// conditionIndex is the index in conditionValues of the status of the condition of type typ, or
// absent when there is no such condition.
func conditionIndex(conds []metav1.Condition, typ string, absent uint8) uint8 {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return absent
	}
	for i, v := range conditionValues {
		if v == c.Status {
			return uint8(i)
		}
	}
	return noCondition
}

func (c *tokenCollector) delete(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tokens, tokenKey{namespace: namespace, name: name})
}

// Describe sends the descriptions of the per-token metrics.
func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tokenExpirationDesc, tokenRefreshDesc, tokenReadyDesc, tokenReadyReasonDesc,
		tokenRefreshedDesc, tokenFailedAttemptsDesc, tokenLastFailureDesc, tokenTicketStreamDesc} {
		ch <- d
	}
}

// Collect sends every token's series.
func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for k, r := range c.tokens {
		kind := k.kind()
		if r.expires != 0 {
			gauge(tokenExpirationDesc, float64(r.expires), k.namespace, k.name, kind, r.typ)
		}
		if r.refresh != 0 {
			gauge(tokenRefreshDesc, float64(r.refresh), k.namespace, k.name, kind, r.typ)
		}
		conditionSeries(gauge, tokenReadyDesc, r.ready, k, kind)
		if r.readyReason != "" {
			gauge(tokenReadyReasonDesc, 1, k.namespace, k.name, kind, r.readyReason)
		}
		conditionSeries(gauge, tokenRefreshedDesc, r.refreshed, k, kind)
		gauge(tokenFailedAttemptsDesc, float64(r.failedAttempts), k.namespace, k.name, kind)
		if r.lastFailure != 0 {
			gauge(tokenLastFailureDesc, float64(r.lastFailure), k.namespace, k.name, kind, r.failureReason)
		}
		conditionSeries(gauge, tokenTicketStreamDesc, r.ticketStream, k, kind)
	}
}

// conditionSeries sends the three series of a condition metric: 1 for the condition's status (at
// index current of conditionValues), 0 for the others; none at all for noSeries.
func conditionSeries(gauge func(*prometheus.Desc, float64, ...string), d *prometheus.Desc, current uint8, k tokenKey, kind string) {
	if current == noSeries {
		return
	}
	for i, v := range conditionValues {
		value := 0.0
		if uint8(i) == current {
			value = 1
		}
		gauge(d, value, k.namespace, k.name, kind, string(v))
	}
}
