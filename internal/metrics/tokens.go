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
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
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

// Collect sends every token's series. A scrape holds all of them at once (the registry gathers
// every series before it encodes any), about ten per token: each token's series are built in one
// block, their label pairs shared (the token's name and namespace once for all its series; the
// kind, condition, type and reason values once per scrape) and the constant values 0 and 1
// shared. At 10,000 tokens a scrape allocates about a quarter of what one constant metric per
// series took (BenchmarkScrapeTokens: 87 MB).
func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	shared := scrapePairs{}
	for k, r := range c.tokens {
		b := &tokenSeries{}
		b.fill(k, r, shared)
		for i := range b.n {
			ch <- &b.series[i]
		}
	}
}

// The label names, and the pairs of the values every scrape uses.
var (
	labelNamespace, labelName, labelKind   = "namespace", "name", "kind"
	labelCondition, labelType, labelReason = "condition", "type", "reason"

	kindPairs = map[string]*dto.LabelPair{
		KindDingTalkToken:        labelPair(&labelKind, KindDingTalkToken),
		KindClusterDingTalkToken: labelPair(&labelKind, KindClusterDingTalkToken),
	}
	conditionPairs = [len(conditionValues)]*dto.LabelPair{
		labelPair(&labelCondition, string(conditionValues[0])),
		labelPair(&labelCondition, string(conditionValues[1])),
		labelPair(&labelCondition, string(conditionValues[2])),
	}
	// The values of the *_status series and of ready_reason: shared by every series that has them.
	gaugeZero, gaugeOne = &dto.Gauge{Value: proto.Float64(0)}, &dto.Gauge{Value: proto.Float64(1)}
)

func labelPair(name *string, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: name, Value: &value}
}

// scrapePairs are the label pairs of the type and reason values of one scrape, by label and value.
type scrapePairs map[[2]string]*dto.LabelPair

func (s scrapePairs) pair(name *string, value string) *dto.LabelPair {
	k := [2]string{*name, value}
	p, ok := s[k]
	if !ok {
		p = labelPair(name, value)
		s[k] = p
	}
	return p
}

// maxSeries is the most series a token has: expiry, next refresh, failed attempts, last failure,
// Ready's reason, and three for each of the Ready, Refreshed and TicketStream conditions.
const maxSeries = 5 + 3*len(conditionValues)

// tokenSeries is one token's series in a scrape, in one allocation.
type tokenSeries struct {
	namespace, name  string
	nsPair, namePair dto.LabelPair
	// pairs back the series' label pairs: four at most each, sorted by name as the registry
	// expects (condition, kind, name, namespace, reason, type).
	pairs  [4 * maxSeries]*dto.LabelPair
	used   int
	floats [4]float64
	gauges [4]dto.Gauge
	valued int
	series [maxSeries]series
	n      int
}

// series is one gauge series of a scrape.
type series struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	gauge  *dto.Gauge
}

func (s *series) Desc() *prometheus.Desc { return s.desc }

// Write gives the registry the series' shared pairs and value, which it never changes.
func (s *series) Write(m *dto.Metric) error {
	m.Label, m.Gauge = s.labels, s.gauge
	return nil
}

// fill builds the series of the token k from its record r.
func (b *tokenSeries) fill(k tokenKey, r tokenRecord, shared scrapePairs) {
	b.namespace, b.name = k.namespace, k.name
	b.nsPair = dto.LabelPair{Name: &labelNamespace, Value: &b.namespace}
	b.namePair = dto.LabelPair{Name: &labelName, Value: &b.name}
	kind := kindPairs[k.kind()]
	if r.expires != 0 {
		b.add(tokenExpirationDesc, b.value(float64(r.expires)), kind, shared.pair(&labelType, r.typ))
	}
	if r.refresh != 0 {
		b.add(tokenRefreshDesc, b.value(float64(r.refresh)), kind, shared.pair(&labelType, r.typ))
	}
	b.conditionSeries(tokenReadyDesc, r.ready, kind)
	if r.readyReason != "" {
		b.add(tokenReadyReasonDesc, gaugeOne, kind, shared.pair(&labelReason, r.readyReason))
	}
	b.conditionSeries(tokenRefreshedDesc, r.refreshed, kind)
	b.add(tokenFailedAttemptsDesc, b.value(float64(r.failedAttempts)), kind, nil)
	if r.lastFailure != 0 {
		b.add(tokenLastFailureDesc, b.value(float64(r.lastFailure)), kind, shared.pair(&labelReason, r.failureReason))
	}
	b.conditionSeries(tokenTicketStreamDesc, r.ticketStream, kind)
}

// conditionSeries adds the three series of a condition metric: 1 for the condition's status (at
// index current of conditionValues), 0 for the others; none at all for noSeries.
func (b *tokenSeries) conditionSeries(d *prometheus.Desc, current uint8, kind *dto.LabelPair) {
	if current == noSeries {
		return
	}
	for i, cond := range conditionPairs {
		g := gaugeZero
		if uint8(i) == current {
			g = gaugeOne
		}
		b.addPairs(d, g, cond, kind, &b.namePair, &b.nsPair)
	}
}

// add adds a series labelled kind, name, namespace and last (nil: none), in that order.
func (b *tokenSeries) add(d *prometheus.Desc, g *dto.Gauge, kind, last *dto.LabelPair) {
	if last == nil {
		b.addPairs(d, g, kind, &b.namePair, &b.nsPair)
		return
	}
	b.addPairs(d, g, kind, &b.namePair, &b.nsPair, last)
}

func (b *tokenSeries) addPairs(d *prometheus.Desc, g *dto.Gauge, pairs ...*dto.LabelPair) {
	labels := b.pairs[b.used : b.used+len(pairs) : b.used+len(pairs)]
	copy(labels, pairs)
	b.used += len(pairs)
	b.series[b.n] = series{desc: d, labels: labels, gauge: g}
	b.n++
}

// value is a gauge holding v, in the block.
func (b *tokenSeries) value(v float64) *dto.Gauge {
	b.floats[b.valued] = v
	g := &b.gauges[b.valued]
	g.Value = &b.floats[b.valued]
	b.valued++
	return g
}
