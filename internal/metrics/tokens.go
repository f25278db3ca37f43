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
	"slices"
	"strings"
	"sync"

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

// family is one per-token metric: its name and help. Its series' label pairs are sorted by name
// (condition, kind, name, namespace, reason, type), as the registry would sort them.
type family struct {
	name, help string
}

var (
	fExpiration = family{"dingtalk_token_expiration_timestamp_seconds",
		"Unix time at which the access token held in the target Secret expires."}
	fRefresh = family{"dingtalk_token_refresh_timestamp_seconds",
		"Unix time at which the next refresh of the access token is due."}
	fReady = family{"dingtalk_token_ready_status",
		"Status of the Ready condition of a token: 1 for the current condition value, 0 for the others."}
	fReadyReason = family{"dingtalk_token_ready_reason",
		"Reason of the Ready condition of a token: 1, on the series of the current reason only."}
	fRefreshed = family{"dingtalk_token_refreshed_status",
		"Status of the Refreshed condition of a token (the outcome of the last refresh attempt): 1 for the current condition value, 0 for the others."}
	fFailedAttempts = family{"dingtalk_token_failed_attempts",
		"Consecutive failed refresh attempts of a token; 0 after a success."}
	fLastFailure = family{"dingtalk_token_last_failure_timestamp_seconds",
		"Unix time of the last failed refresh attempt of a token, labelled with its reason; no series after a success."}
	fTicketStream = family{"dingtalk_token_ticket_stream_status",
		"Status of the TicketStream condition of a token whose suite tickets come from DingTalk Stream mode: 1 for the current condition value, 0 for the others."}

	// families are the per-token metrics, in the order of a token's series.
	families = [...]*family{&fExpiration, &fRefresh, &fReady, &fReadyReason, &fRefreshed, &fFailedAttempts, &fLastFailure, &fTicketStream}
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

// The per-token series are not a prometheus.Collector: a scrape would make, check and hash one
// metric per series before encoding any (about ten per token). The registry the metrics endpoint
// gathers (registry, in metrics.go) adds them as metric families built here, each token's series
// in three allocations, with the label pairs and the constant values they share. At 10,000 tokens
// (ten series each) a scrape allocates 23 MB, and 30,000 times, instead of 87 MB, two million
// times, as constant metrics did (BenchmarkScrapeTokens).

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
	gaugeType           = dto.MetricType_GAUGE
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

// families are the per-token metric families, each token's series in name order, none empty.
func (c *tokenCollector) families() []*dto.MetricFamily {
	c.mu.RLock()
	defer c.mu.RUnlock()
	// Each family's series, counted first: a slice grown by appending would hold up to twice
	// as many pointers.
	count := map[*family]int{}
	var fs [maxSeries]*family
	for _, r := range c.tokens {
		for _, f := range fs[:r.families(&fs)] {
			count[f]++
		}
	}
	out := make([]*dto.MetricFamily, len(families))
	index := make(map[*family]*dto.MetricFamily, len(families))
	for i, f := range families {
		out[i] = &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: &gaugeType, Metric: make([]*dto.Metric, 0, count[f])}
		index[f] = out[i]
	}
	shared := scrapePairs{}
	for k, r := range c.tokens {
		var b tokenSeries
		b.fill(k, r, shared)
		for i := range b.n {
			f := index[b.family[i]]
			f.Metric = append(f.Metric, &b.metrics[i])
		}
	}
	kept := out[:0]
	for _, f := range out {
		if len(f.Metric) == 0 {
			continue
		}
		slices.SortFunc(f.Metric, compareLabels)
		kept = append(kept, f)
	}
	return kept
}

// compareLabels orders two series of a family by their label values.
func compareLabels(a, b *dto.Metric) int {
	for i := range min(len(a.Label), len(b.Label)) {
		if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
			return c
		}
	}
	return len(a.Label) - len(b.Label)
}

// maxSeries is the most series a token has: expiry, next refresh, failed attempts, last failure,
// Ready's reason, and three for each of the Ready, Refreshed and TicketStream conditions.
const maxSeries = 5 + 3*len(conditionValues)

// tokenSeries builds one token's series in a scrape.
type tokenSeries struct {
	*seriesBlock
	metrics []dto.Metric
	family  [maxSeries]*family
	pairs   []*dto.LabelPair
	n       int
}

// seriesBlock is what a token's series share, in one allocation: its name and namespace pairs
// and its values other than 0 and 1.
type seriesBlock struct {
	namespace, name  string
	nsPair, namePair dto.LabelPair
	floats           [4]float64
	gauges           [4]dto.Gauge
	valued           int
}

// families lists the family of each of the token's series, in order, in out; it returns how many.
func (r tokenRecord) families(into *[maxSeries]*family) int {
	out := into[:0]
	if r.expires != 0 {
		out = append(out, &fExpiration)
	}
	if r.refresh != 0 {
		out = append(out, &fRefresh)
	}
	out = append(out, &fReady, &fReady, &fReady)
	if r.readyReason != "" {
		out = append(out, &fReadyReason)
	}
	out = append(out, &fRefreshed, &fRefreshed, &fRefreshed, &fFailedAttempts)
	if r.lastFailure != 0 {
		out = append(out, &fLastFailure)
	}
	if r.ticketStream != noSeries {
		out = append(out, &fTicketStream, &fTicketStream, &fTicketStream)
	}
	return len(out)
}

// fill builds the series of the token k from its record r.
func (b *tokenSeries) fill(k tokenKey, r tokenRecord, shared scrapePairs) {
	n := r.families(&b.family)
	b.seriesBlock = &seriesBlock{namespace: k.namespace, name: k.name}
	b.nsPair = dto.LabelPair{Name: &labelNamespace, Value: &b.seriesBlock.namespace}
	b.namePair = dto.LabelPair{Name: &labelName, Value: &b.seriesBlock.name}
	b.metrics, b.pairs = make([]dto.Metric, n), make([]*dto.LabelPair, 0, 4*n)
	kind := kindPairs[k.kind()]
	if r.expires != 0 {
		b.add(&fExpiration, b.value(float64(r.expires)), kind, shared.pair(&labelType, r.typ))
	}
	if r.refresh != 0 {
		b.add(&fRefresh, b.value(float64(r.refresh)), kind, shared.pair(&labelType, r.typ))
	}
	b.conditionSeries(&fReady, r.ready, kind)
	if r.readyReason != "" {
		b.add(&fReadyReason, gaugeOne, kind, shared.pair(&labelReason, r.readyReason))
	}
	b.conditionSeries(&fRefreshed, r.refreshed, kind)
	b.add(&fFailedAttempts, b.value(float64(r.failedAttempts)), kind, nil)
	if r.lastFailure != 0 {
		b.add(&fLastFailure, b.value(float64(r.lastFailure)), kind, shared.pair(&labelReason, r.failureReason))
	}
	b.conditionSeries(&fTicketStream, r.ticketStream, kind)
}

// conditionSeries adds the three series of a condition metric: 1 for the condition's status (at
// index current of conditionValues), 0 for the others; none at all for noSeries.
func (b *tokenSeries) conditionSeries(f *family, current uint8, kind *dto.LabelPair) {
	if current == noSeries {
		return
	}
	for i, cond := range conditionPairs {
		g := gaugeZero
		if uint8(i) == current {
			g = gaugeOne
		}
		b.addPairs(f, g, cond, kind, &b.namePair, &b.nsPair)
	}
}

// add adds a series labelled kind, name, namespace and last (nil: none), in that order.
func (b *tokenSeries) add(f *family, g *dto.Gauge, kind, last *dto.LabelPair) {
	if last == nil {
		b.addPairs(f, g, kind, &b.namePair, &b.nsPair)
		return
	}
	b.addPairs(f, g, kind, &b.namePair, &b.nsPair, last)
}

func (b *tokenSeries) addPairs(f *family, g *dto.Gauge, pairs ...*dto.LabelPair) {
	start := len(b.pairs)
	b.pairs = append(b.pairs, pairs...)
	m := &b.metrics[b.n]
	m.Label, m.Gauge = b.pairs[start:len(b.pairs):len(b.pairs)], g
	if b.family[b.n] != f {
		panic("metrics: a token's series are not in the order of its families")
	}
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
