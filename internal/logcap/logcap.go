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

// Package logcap caps a logger's verbosity below the levels at which client-go logs request and
// response bodies: a Secret's body holds the token and credentials.
package logcap

import "github.com/go-logr/logr"

// maxClientVerbosity is the highest V-level the reconciler's logger passes on to the libraries it
// calls with its context. client-go logs request and response bodies from V(8) on, and a Secret's
// body holds the token and credentials: at any --zap-log-level, those lines are dropped.
const maxClientVerbosity = 7

// Cap returns l without V-levels above 7, where client-go starts logging request and
// response bodies (a Secret's data among them). internal/operator.NewManager applies it to the
// manager's logger, from which every reconcile's context logger derives; cmd/main.go applies it to
// the global and klog's logger too, so that the caches' own list calls can never print a Secret
// either, whatever --zap-log-level says.
func Cap(l logr.Logger) logr.Logger { return capVerbosity(l, maxClientVerbosity) }

// capVerbosity returns l without its V-levels above max.
func capVerbosity(l logr.Logger, max int) logr.Logger {
	sink := l.GetSink()
	if sink == nil {
		return l
	}
	// The cap is a frame between the caller and the sink: a copy of the sink skips it. The sink
	// itself is never initialised again (cappedSink.Init): other loggers use it at the same time.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	return logr.New(cappedSink{LogSink: sink, max: max})
}

// cappedSink drops messages above a V-level.
type cappedSink struct {
	logr.LogSink
	max int
}

// Init does nothing: the sink was initialised when the logger it came from was made.
func (s cappedSink) Init(logr.RuntimeInfo) {}

func (s cappedSink) Enabled(level int) bool { return level <= s.max && s.LogSink.Enabled(level) }

func (s cappedSink) Info(level int, msg string, kv ...any) {
	if level <= s.max {
		s.LogSink.Info(level, msg, kv...)
	}
}

func (s cappedSink) WithValues(kv ...any) logr.LogSink {
	return cappedSink{LogSink: s.LogSink.WithValues(kv...), max: s.max}
}

func (s cappedSink) WithName(name string) logr.LogSink {
	return cappedSink{LogSink: s.LogSink.WithName(name), max: s.max}
}

func (s cappedSink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return cappedSink{LogSink: cd.WithCallDepth(depth), max: s.max}
	}
	return s
}
