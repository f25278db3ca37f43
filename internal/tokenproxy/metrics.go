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

package tokenproxy

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The metrics' names.
const (
	MetricRequests         = "dingtalk_token_proxy_requests_total"
	MetricRefused          = "dingtalk_token_proxy_refused_total"
	MetricRetries          = "dingtalk_token_proxy_retries_total"
	MetricUpstreamDuration = "dingtalk_token_proxy_upstream_duration_seconds"
	MetricTokenValid       = "dingtalk_token_proxy_token_valid"
	MetricTokenAge         = "dingtalk_token_proxy_token_age_seconds"
	MetricTokenExpiresIn   = "dingtalk_token_proxy_token_expires_in_seconds"
)

// Refusal reasons, the values of the reason label of MetricRefused.
const (
	refusedConnect  = "connect"
	refusedMethod   = "method"
	refusedTarget   = "absolute_form"
	refusedPath     = "path"
	refusedHost     = "host"
	refusedNoToken  = "no_token"
	refusedBodyRead = "body_unreadable"
)

// metrics are the proxy's Prometheus metrics: never a token, a path or a query in a label.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	retries   *prometheus.CounterVec
	upstreamD *prometheus.HistogramVec
}

func newMetrics(src *Source) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests,
			Help: "Requests answered, by upstream (api, oapi) and status class of the answer (2xx..5xx), the proxy's own refusals included."},
			[]string{"upstream", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRefused,
			Help: "Requests answered by the proxy without an upstream call, by upstream and reason (connect, absolute_form, host, no_token, body_unreadable)."},
			[]string{"upstream", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRetries,
			Help: "Requests sent again with a newer token after DingTalk answered that the token was invalid, by upstream."},
			[]string{"upstream"}),
		upstreamD: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricUpstreamDuration,
			Help:    "Time from sending a request upstream to its answer's headers, per attempt, by upstream.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"upstream"}),
	}
	now := func() float64 { return float64(src.clk.Now().UnixNano()) / 1e9 }
	valid := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTokenValid,
		Help: "1 when the proxy holds a valid (present, readable, unexpired) token, else 0."},
		func() float64 {
			if _, err := src.Current(); err != nil {
				return 0
			}
			return 1
		})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTokenAge,
		Help: "Seconds since the token last read was first seen (0 when none was read)."},
		func() float64 {
			if t, ok := src.Last(); ok {
				return now() - float64(t.Loaded.UnixNano())/1e9
			}
			return 0
		})
	expiresIn := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricTokenExpiresIn,
		Help: "Seconds until the token last read expires, negative once it has (0 when none was read or it has no expiry)."},
		func() float64 {
			if t, ok := src.Last(); ok && !t.Expires.IsZero() {
				return float64(t.Expires.UnixNano())/1e9 - now()
			}
			return 0
		})
	m.reg.MustRegister(m.requests, m.refused, m.retries, m.upstreamD, valid, age, expiresIn,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// upstreamMetrics are one upstream's series, resolved once (no label lookup per request).
type upstreamMetrics struct {
	byClass  [6]prometheus.Counter // index: status / 100
	refused  func(reason string) prometheus.Counter
	retries  prometheus.Counter
	duration prometheus.Observer
}

func (m *metrics) forUpstream(name string) *upstreamMetrics {
	um := &upstreamMetrics{
		refused:  func(reason string) prometheus.Counter { return m.refused.WithLabelValues(name, reason) },
		retries:  m.retries.WithLabelValues(name),
		duration: m.upstreamD.WithLabelValues(name),
	}
	for c := 1; c < len(um.byClass); c++ {
		um.byClass[c] = m.requests.WithLabelValues(name, strconv.Itoa(c)+"xx")
	}
	return um
}

// answered counts an answer by its status class.
func (um *upstreamMetrics) answered(status int) {
	if c := status / 100; c >= 1 && c < len(um.byClass) {
		um.byClass[c].Inc()
	}
}

// handler serves /metrics.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
