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

// Package eventrecorder records the operator's Events (events.k8s.io/v1) in bounded memory.
//
// client-go's events broadcaster (what the manager's GetEventRecorder gives) keeps a copy of every
// Event it recorded for six to twelve minutes, to count repeats of one event as a series, and
// starts a goroutine per Event: issuing 10,000 tokens held about 9 MiB of Events for minutes
// (docs/performance.md). The operator emits Events on transitions only (a token issued, a refresh
// failing or recovering, a refresh request ignored): nothing repeats within minutes, so there is
// no series to count. This Recorder makes the same Event (name, reporting controller and
// instance, regarding, action, reason, note, type) and writes it from a queue of at most
// QueueSize Events with Workers writers; an Event that finds the queue full is dropped and
// counted (dingtalk_events_dropped_total), as Kubernetes Events are best effort.
package eventrecorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record/util"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/metrics"
)

const (
	// QueueSize bounds the Events waiting to be written: about 1 KiB each.
	QueueSize = 1024
	// Workers write Events at once.
	Workers = 4
	// maxTries and retryWait are how long an Event is retried when the API server cannot be
	// reached (as client-go's broadcaster: 12 tries, 10 s apart).
	maxTries  = 12
	retryWait = 10 * time.Second
	// writeTimeout bounds one write.
	writeTimeout = 10 * time.Second
)

// Sink writes an Event: the API server (Events) or a test's.
type Sink interface {
	Create(ctx context.Context, e *eventsv1.Event) error
}

// Recorder is an events.EventRecorder with a bounded queue. Start it as a manager runnable; Events
// recorded before it starts wait in the queue.
type Recorder struct {
	scheme              *runtime.Scheme
	sink                Sink
	reportingController string
	reportingInstance   string
	clock               clock.Clock
	log                 logr.Logger
	queue               chan *eventsv1.Event
	dropped             atomic.Int64
}

var _ events.EventRecorder = (*Recorder)(nil)

// New is a Recorder of the events of reportingController, writing to sink. Its reporting
// instance is the controller and the host name, as client-go's. log receives, at V(1), every
// Event recorded (as controller-runtime's recorder logs them) and the failures to write.
func New(scheme *runtime.Scheme, sink Sink, reportingController string, clk clock.Clock, log logr.Logger) *Recorder {
	host, _ := os.Hostname()
	return &Recorder{
		scheme:              scheme,
		sink:                sink,
		reportingController: reportingController,
		reportingInstance:   reportingController + "-" + host,
		clock:               clk,
		log:                 log,
		queue:               make(chan *eventsv1.Event, QueueSize),
	}
}

// Eventf records an Event about regarding (related: none when nil). It never blocks: an Event
// that finds the queue full is dropped.
func (r *Recorder) Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	message := fmt.Sprintf(note, args...)
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		r.log.Error(err, "Could not make a reference to an Event's object; the Event is not recorded", "reason", reason)
		return
	}
	if !util.ValidateEventType(eventtype) {
		r.log.Error(nil, "Unsupported Event type; the Event is not recorded", "type", eventtype, "reason", reason)
		return
	}
	now := r.clock.Now()
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: util.GenerateEventName(ref.Name, now.UnixNano()), Namespace: ns},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: r.reportingController,
		ReportingInstance:   r.reportingInstance,
		Action:              action,
		Reason:              reason,
		Regarding:           *ref,
		Note:                message,
		Type:                eventtype,
	}
	if related != nil {
		if rel, err := reference.GetReference(r.scheme, related); err == nil {
			e.Related = rel
		}
	}
	r.log.V(1).Info("Event occurred", "object", ref.Namespace+"/"+ref.Name, "kind", ref.Kind, "apiVersion", ref.APIVersion,
		"type", eventtype, "reason", reason, "action", action, "note", message)
	select {
	case r.queue <- e:
	default:
		r.dropped.Add(1)
		metrics.EventsDropped.Inc()
	}
}

// Dropped is the number of Events dropped so far (the queue was full).
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Start writes the queued Events until ctx ends; Events still queued then are dropped.
func (r *Recorder) Start(ctx context.Context) error {
	done := make(chan struct{})
	for range Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-r.queue:
					r.write(ctx, e)
				}
			}
		}()
	}
	for range Workers {
		<-done
	}
	return nil
}

// NeedLeaderElection: every replica writes the Events it records (only the leader reconciles).
func (r *Recorder) NeedLeaderElection() bool { return false }

// write creates e, retrying while the API server cannot be reached; an Event the API server
// refuses is dropped (it would be refused again).
func (r *Recorder) write(ctx context.Context, e *eventsv1.Event) {
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		err := r.sink.Create(wctx, e)
		cancel()
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			return
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsNotFound(err):
			r.log.Error(classified(err), "The API server refused an Event; it is not retried", "reason", e.Reason)
			return
		case try >= maxTries:
			r.log.Error(classified(err), "Could not write an Event; giving up", "reason", e.Reason)
			return
		}
		r.log.V(1).Info("Could not write an Event; retrying", "reason", e.Reason, "error", classified(err).Error())
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(wait.Jitter(retryWait, 0.25)):
		}
	}
}

// classified keeps an API error's reason and code only (its message may quote what was written);
// any other error is returned as is.
func classified(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return fmt.Errorf("%s (HTTP %d)", st.Status().Reason, st.Status().Code)
	}
	return err
}

// APISink writes Events to the API server.
func APISink(c eventsv1client.EventsGetter) Sink { return apiSink{c} }

type apiSink struct{ c eventsv1client.EventsGetter }

func (s apiSink) Create(ctx context.Context, e *eventsv1.Event) error {
	_, err := s.c.Events(e.Namespace).Create(ctx, e, metav1.CreateOptions{})
	return err
}
