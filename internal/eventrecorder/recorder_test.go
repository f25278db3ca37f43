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

package eventrecorder

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/api/v1alpha1"
)

// sink is a test's Sink: it answers with the errors of fail, in turn (then success), and keeps
// what it wrote; while hold is open, it waits.
type sink struct {
	mu      sync.Mutex
	written []*eventsv1.Event
	fail    []error
	tries   int
	hold    chan struct{}
}

func (s *sink) Create(ctx context.Context, e *eventsv1.Event) error {
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if len(s.fail) > 0 {
		err := s.fail[0]
		s.fail = s.fail[1:]
		return err
	}
	s.written = append(s.written, e)
	return nil
}

func (s *sink) state() (written, tries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.written), s.tries
}

func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func token() *v1alpha1.DingTalkToken {
	return &v1alpha1.DingTalkToken{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "crm", UID: "uid-1", ResourceVersion: "7"}}
}

// TestEvent: the Event recorded is client-go's: named after its object and time, in its
// namespace, with the reporting controller and instance, action, reason, type and note.
func TestEvent(t *testing.T) {
	g := NewWithT(t)
	s := &sink{}
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC))
	r := New(scheme(t), s, "dingtalk-token-operator", clk, logr.Discard())
	r.Eventf(token(), nil, corev1.EventTypeNormal, v1alpha1.ReasonTokenIssued, "Refresh", "Issued a new token, valid until %s", "then")
	r.Eventf(token(), nil, "Loud", "Odd", "Refresh", "not recorded: no such type")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = r.Start(ctx) }()
	g.Eventually(func() int { n, _ := s.state(); return n }).Should(Equal(1))
	e := s.written[0]
	g.Expect(e.Namespace).To(Equal("apps"))
	g.Expect(e.Name).To(HavePrefix("crm."))
	g.Expect(e.EventTime.Time).To(Equal(clk.Now()))
	g.Expect(e.ReportingController).To(Equal("dingtalk-token-operator"))
	g.Expect(e.ReportingInstance).To(HavePrefix("dingtalk-token-operator-"))
	g.Expect(e.Regarding.Kind).To(Equal("DingTalkToken"))
	g.Expect(e.Regarding.Name).To(Equal("crm"))
	g.Expect(e.Regarding.UID).To(BeEquivalentTo("uid-1"))
	g.Expect(e.Regarding.APIVersion).To(Equal(v1alpha1.GroupVersion.String()))
	g.Expect([]string{e.Type, e.Reason, e.Action, e.Note}).To(Equal([]string{"Normal", v1alpha1.ReasonTokenIssued, "Refresh", "Issued a new token, valid until then"}))
	g.Consistently(func() int { n, _ := s.state(); return n }, 100*time.Millisecond).Should(Equal(1))
}

// TestBoundedQueue: Events recorded while the writers cannot keep up wait in a queue of
// QueueSize; the ones beyond are dropped and counted, and recording never blocks.
func TestBoundedQueue(t *testing.T) {
	g := NewWithT(t)
	s := &sink{hold: make(chan struct{})}
	r := New(scheme(t), s, "dingtalk-token-operator", clocktesting.NewFakeClock(time.Now()), logr.Discard())
	const extra = 25
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range QueueSize + extra {
			r.Eventf(token(), nil, corev1.EventTypeNormal, v1alpha1.ReasonTokenIssued, "Refresh", "Issued")
		}
	}()
	g.Eventually(done).Should(BeClosed(), "recording blocked")
	g.Expect(r.Dropped()).To(BeEquivalentTo(extra))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = r.Start(ctx) }()
	close(s.hold)
	g.Eventually(func() int { n, _ := s.state(); return n }).Should(Equal(QueueSize))
}

// TestRetries: an Event the API server could not be reached for is written again after a wait;
// one it refused is not.
func TestRetries(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Now())
	refused := apierrors.NewInvalid(schema.GroupKind{Group: "events.k8s.io", Kind: "Event"}, "x", nil)
	s := &sink{fail: []error{errors.New("connection refused")}}
	r := New(scheme(t), s, "dingtalk-token-operator", clk, logr.Discard())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = r.Start(ctx) }()
	r.Eventf(token(), nil, corev1.EventTypeWarning, "RefreshFailed", "Refresh", "first")
	g.Eventually(func() int { _, tries := s.state(); return tries }).Should(Equal(1))
	g.Eventually(clk.HasWaiters).Should(BeTrue())
	clk.Step(retryWait * 2)
	g.Eventually(func() int { n, _ := s.state(); return n }).Should(Equal(1), "the Event is not written after the API server came back")
	s.mu.Lock()
	s.fail = []error{refused}
	s.mu.Unlock()
	r.Eventf(token(), nil, corev1.EventTypeWarning, "RefreshFailed", "Refresh", "refused")
	g.Eventually(func() int { _, tries := s.state(); return tries }).Should(Equal(3))
	g.Consistently(func() int { _, tries := s.state(); return tries }, 100*time.Millisecond).Should(Equal(3), "the refused Event was retried")
	g.Expect(clk.HasWaiters()).To(BeFalse(), "a retry of the refused Event is pending")
	n, _ := s.state()
	g.Expect(n).To(Equal(1))
}
