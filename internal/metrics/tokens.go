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
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	tokenExpirationDesc = prometheus.NewDesc("dingtalk_token_expiration_timestamp_seconds",
		"Unix time at which the access token held in the target Secret expires.",
		[]string{"namespace", "name", "type"}, nil)
	tokenRefreshDesc = prometheus.NewDesc("dingtalk_token_refresh_timestamp_seconds",
		"Unix time at which the next refresh of the access token is due.",
		[]string{"namespace", "name", "type"}, nil)
	tokenReadyDesc = prometheus.NewDesc("dingtalk_token_ready_status",
		"Status of the Ready condition of a DingTalkToken: 1 for the current condition value, 0 for the others.",
		[]string{"namespace", "name", "condition"}, nil)
)

// readyValues are the values of dingtalk_token_ready_status's condition label, each a series.
var readyValues = [...]string{"True", "False", "Unknown"}

// noReady is tokenRecord.ready for a status that is none of readyValues: every series is 0.
const noReady = uint8(255)

// tokenKey names a token: a ClusterDingTalkToken has an empty namespace.
type tokenKey struct{ namespace, name string }

// tokenRecord is what the metrics say of one token: Unix seconds (0: no series) and the index of
// its Ready status in readyValues (noReady: none of them).
type tokenRecord struct {
	typ              string
	expires, refresh int64
	ready            uint8
}

// tokenCollector exports the per-token series from one record per token, built at scrape time.
type tokenCollector struct {
	mu     sync.RWMutex
	tokens map[tokenKey]tokenRecord
}

func newTokenCollector() *tokenCollector {
	return &tokenCollector{tokens: map[tokenKey]tokenRecord{}}
}

func (c *tokenCollector) set(namespace, name, tokenType string, expiresAt, refreshAt time.Time, ready string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := tokenKey{namespace: namespace, name: name}
	r := c.tokens[k]
	if r.typ != tokenType {
		// Series of another type are other series: a type change starts afresh.
		r = tokenRecord{typ: tokenType}
	}
	if !expiresAt.IsZero() {
		r.expires = expiresAt.Unix()
	}
	r.refresh = 0
	if !refreshAt.IsZero() {
		r.refresh = refreshAt.Unix()
	}
	r.ready = noReady
	for i, v := range readyValues {
		if v == ready {
			r.ready = uint8(i)
		}
	}
	c.tokens[k] = r
}

func (c *tokenCollector) delete(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tokens, tokenKey{namespace: namespace, name: name})
}

// Describe sends the descriptions of the three per-token metrics.
func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tokenExpirationDesc
	ch <- tokenRefreshDesc
	ch <- tokenReadyDesc
}

// Collect sends every token's series.
func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for k, r := range c.tokens {
		if r.expires != 0 {
			ch <- prometheus.MustNewConstMetric(tokenExpirationDesc, prometheus.GaugeValue, float64(r.expires), k.namespace, k.name, r.typ)
		}
		if r.refresh != 0 {
			ch <- prometheus.MustNewConstMetric(tokenRefreshDesc, prometheus.GaugeValue, float64(r.refresh), k.namespace, k.name, r.typ)
		}
		for i, v := range readyValues {
			value := 0.0
			if uint8(i) == r.ready {
				value = 1
			}
			ch <- prometheus.MustNewConstMetric(tokenReadyDesc, prometheus.GaugeValue, value, k.namespace, k.name, v)
		}
	}
}
