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
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// BenchmarkScrapeTokens is one scrape of the per-token series of 10,000 Ready DingTalkTokens, as
// promhttp serves it: the registry's Gather (registry), then the text exposition. Its bytes/op is what a
// scrape holds at once (go test -bench ScrapeTokens -benchmem ./internal/metrics).
func BenchmarkScrapeTokens(b *testing.B) {
	c := newTokenCollector()
	at := &metav1.Time{Time: time.Unix(2_000_000_000, 0)}
	st := v1alpha1.TokenStatus{ExpiresAt: at, RefreshTime: at, Conditions: []metav1.Condition{
		{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenValid},
		{Type: v1alpha1.ConditionRefreshed, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenIssued},
	}}
	for i := range 10000 {
		c.set(fmt.Sprintf("bench-%d", i%10), fmt.Sprintf("tok-%05d", i), string(v1alpha1.TokenTypeInternalApp), &st)
	}
	reg := registry{prometheus.NewRegistry(), c}
	b.ReportAllocs()
	for b.Loop() {
		fams, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}
