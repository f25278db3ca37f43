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
	"errors"
	"fmt"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
)

// ManagerOptions are the flags of an in-process manager: the shipped defaults, against the
// simulator, with no metrics or probe server (the metrics still fill controller-runtime's
// registry) and no leader election. Change what a test needs before StartManager.
func (e *Environment) ManagerOptions(namespaces ...string) operator.Options {
	o := operator.DefaultOptions()
	if e.Sim != nil {
		o.DingTalkEndpoint = e.Sim.URL()
	}
	o.WatchNamespaces = namespaces
	o.MetricsBindAddress = "0"
	o.HealthProbeBindAddress = "0"
	return o
}

// Manager is an in-process manager built by internal/operator.NewManager, exactly as
// cmd/main.go builds it, running until Stop.
type Manager struct {
	ctrl.Manager
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// StartManager builds the manager with o and hooks (several managers may run in one process:
// controller-name validation is skipped) and starts it with ctx. It returns once the manager's
// caches have synced, so what a test creates next is seen by a ready manager.
func (e *Environment) StartManager(ctx context.Context, o operator.Options, hooks operator.Hooks) (*Manager, error) {
	hooks.SkipNameValidation = true
	mgr, err := operator.NewManager(e.Config, o, hooks)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Manager{Manager: mgr, cancel: cancel, done: make(chan error, 1)}
	syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
	defer cancelSync()
	go func() {
		m.done <- mgr.Start(ctx)
		cancelSync() // a manager that failed to start ends the wait below at once
	}()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		return nil, errors.Join(errors.New("the manager's caches did not sync"), m.Stop())
	}
	return m, nil
}

// Stop stops the manager as SIGTERM does (running reconciles get the graceful shutdown period)
// and waits until it returned; later calls return the same result.
func (m *Manager) Stop() error {
	m.once.Do(func() {
		m.cancel()
		select {
		case err := <-m.done:
			if err != nil {
				m.err = fmt.Errorf("manager stopped with an error: %w", err)
			}
		case <-time.After(90 * time.Second):
			m.err = errors.New("manager did not stop within 90s")
		}
	})
	return m.err
}
