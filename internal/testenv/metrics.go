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

package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics are parsed metric families by name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics parses the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(r)
}

// InsecureHTTP is the HTTP client for the operator's own endpoints (metrics, probes) in tests:
// the metrics server's certificate is self-signed, and what a test checks is who may read.
var InsecureHTTP = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
}

// Get GETs url with InsecureHTTP, with a bearer token when token is set, and returns the status
// and the body.
func Get(url, token string) (int, string, error) {
	resp, err := get(context.Background(), InsecureHTTP, url, token)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Scrape GETs a /metrics URL with hc, with a bearer token when token is set, and parses it.
func Scrape(ctx context.Context, hc *http.Client, url, token string) (Metrics, error) {
	resp, err := get(ctx, hc, url, token)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

func get(ctx context.Context, hc *http.Client, url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return hc.Do(req)
}

// Gather reads controller-runtime's registry: the metrics of the managers in this process.
func Gather() (Metrics, error) {
	fams, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return nil, err
	}
	out := make(Metrics, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out, nil
}

// Sample is the value of the first series of family name whose labels include want (a gauge's
// or counter's value, a histogram's sample count); false when there is none.
func (m Metrics) Sample(name string, want map[string]string) (float64, bool) {
	for _, s := range m[name].GetMetric() {
		if !hasLabels(s, want) {
			continue
		}
		switch {
		case s.Gauge != nil:
			return s.GetGauge().GetValue(), true
		case s.Counter != nil:
			return s.GetCounter().GetValue(), true
		case s.Histogram != nil:
			return float64(s.GetHistogram().GetSampleCount()), true
		case s.Untyped != nil:
			return s.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// Value is Sample's value, or -1 when the series is missing (no metric here is negative).
func (m Metrics) Value(name string, want map[string]string) float64 {
	v, ok := m.Sample(name, want)
	if !ok {
		return -1
	}
	return v
}

// Total sums the gauge and counter values of every series of family name whose labels include want.
func (m Metrics) Total(name string, want map[string]string) float64 {
	sum := 0.0
	for _, s := range m[name].GetMetric() {
		if hasLabels(s, want) {
			sum += s.GetCounter().GetValue() + s.GetGauge().GetValue()
		}
	}
	return sum
}

// Count is the number of series of family name whose labels include want and whose value is v.
func (m Metrics) Count(name string, want map[string]string, v float64) int {
	n := 0
	for _, s := range m[name].GetMetric() {
		if hasLabels(s, want) && s.GetGauge().GetValue()+s.GetCounter().GetValue()+s.GetUntyped().GetValue() == v {
			n++
		}
	}
	return n
}

func hasLabels(s *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range s.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}
