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

package controllers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/controllers/internal/sharedfetch"
)

// TestShutdownBudget: a stopping manager waits for the longest pass still running (a DingTalk call
// in flight, the refresh-token store after it, the status write) before it releases the leader
// lease, and the kubelet waits longer than the manager. A shorter wait lets a new leader use a
// User refresh token the old process is still storing.
func TestShutdownBudget(t *testing.T) {
	if need := sharedfetch.CallTimeout + refreshTokenStoreTimeout + targetWriteTimeout + statusWriteTimeout; ShutdownBudget < need {
		t.Errorf("ShutdownBudget = %s, want at least %s (fetch + store + target write + status write)", ShutdownBudget, need)
	}
	// The in-pass store retry is short: a worker is not held for minutes; the record stays pending.
	if refreshTokenStoreTimeout > 30*time.Second {
		t.Errorf("refreshTokenStoreTimeout = %s, want at most 30s", refreshTokenStoreTimeout)
	}
	raw, err := os.ReadFile(filepath.Join("..", "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		found = true
		g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if g == nil || time.Duration(*g)*time.Second <= ShutdownBudget {
			t.Errorf("terminationGracePeriodSeconds = %v, want more than the manager's graceful shutdown (%s)", g, ShutdownBudget)
		}
	}
	if !found {
		t.Fatal("no Deployment in config/manager/manager.yaml")
	}
}
