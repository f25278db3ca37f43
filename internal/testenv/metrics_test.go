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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(`# TYPE dingtalk_token_ready_status gauge
dingtalk_token_ready_status{condition="True",name="a",namespace="x"} 1
dingtalk_token_ready_status{condition="False",name="a",namespace="x"} 0
dingtalk_token_ready_status{condition="True",name="b",namespace="x"} 1
# TYPE dingtalk_api_requests_total counter
dingtalk_api_requests_total{endpoint="/a",result="success"} 3
dingtalk_api_requests_total{endpoint="/b",result="success"} 4
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.5e+06
`))
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]struct{ got, want float64 }{
		"value":               {m.Value("dingtalk_token_ready_status", map[string]string{"name": "a", "condition": "False"}), 0},
		"missing series":      {m.Value("dingtalk_token_ready_status", map[string]string{"name": "c"}), -1},
		"unlabelled":          {m.Value("go_memstats_heap_inuse_bytes", nil), 1.5e6},
		"total of a counter":  {m.Total("dingtalk_api_requests_total", map[string]string{"result": "success"}), 7},
		"ready series, value": {float64(m.Count("dingtalk_token_ready_status", map[string]string{"condition": "True"}, 1)), 2},
	}
	for name, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", name, c.got, c.want)
		}
	}
	if _, ok := m.Sample("dingtalk_token_ready_status", map[string]string{"namespace": "y"}); ok {
		t.Error("a series of another namespace was found")
	}
}

// TestScrape: a bearer token is sent when given; a refused scrape is an error naming the status.
func TestScrape(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer reader" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte("# TYPE up gauge\nup 1\n"))
	}))
	defer srv.Close()
	if code, _, err := Get(srv.URL, ""); err != nil || code != http.StatusForbidden {
		t.Errorf("Get() without a token = %d, %v", code, err)
	}
	m, err := Scrape(context.Background(), InsecureHTTP, srv.URL, "reader")
	if err != nil || m.Value("up", nil) != 1 {
		t.Errorf("Scrape() = %v, %v", m, err)
	}
	if _, err := Scrape(context.Background(), InsecureHTTP, srv.URL, "stranger"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Scrape() with a refused token = %v", err)
	}
}
