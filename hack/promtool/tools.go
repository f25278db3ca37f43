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

// Package promtool is a tool module: it pins Prometheus' promtool (the `tool` line of go.mod), which
// `make promtool` builds from the Go module proxy into bin/prometheus/<version>/ with metricnames
// beside it. `promtool test rules` runs the unit tests of config/prometheus/alerts.yaml; metricnames
// lists the metrics that the alerts and the Grafana dashboard name. Its own module, so that
// Prometheus' dependencies never move the operator's.
package promtool
