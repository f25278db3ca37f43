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
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

// Options configure Start. The zero value starts a control plane with the project's CRDs and no
// simulator.
type Options struct {
	// Root is the repository root (default: RepoRoot).
	Root string
	// Assets holds kube-apiserver and etcd (default: AssetsDir, i.e. $KUBEBUILDER_ASSETS or
	// bin/k8s/<version>).
	Assets string
	// StartTimeout bounds the control plane's start (default 90s: a loaded 2-core machine).
	StartTimeout time.Duration
	// Simulator, when set, starts the DingTalk simulator with this configuration beside the
	// control plane (on a free loopback port, with the real clock).
	Simulator *simulator.Config
	// Build are the programs the suite runs as processes, built while the control plane starts.
	Build []Binary
}

// Binary is a program of the repository, built as `make build` builds it.
type Binary struct {
	// Module is the directory of its Go module, relative to the repository root ("": the root;
	// "hack/release" for the release tool).
	Module string
	// Package is the package to build, relative to Module ("./cmd").
	Package string
	// Out is where the binary is written.
	Out string
	// Race builds it with -race; RaceEnabled builds it as the tests themselves run, reusing the
	// packages the test build compiled.
	Race bool
}

// Environment is a running envtest control plane (a real kube-apiserver and etcd) with the
// DingTalkToken CRD installed, and optionally the DingTalk simulator.
type Environment struct {
	// Root is the repository root.
	Root string
	// Config is the control plane's admin configuration.
	Config *rest.Config
	// Client is an uncached, unthrottled client with the operator's scheme: what tests read and
	// write with, straight to the API server.
	Client client.Client
	// Scheme is the operator's scheme (internal/operator.Scheme).
	Scheme *runtime.Scheme
	// Sim is the DingTalk simulator (nil unless Options.Simulator was set).
	Sim *simulator.Server

	env *envtest.Environment
	// usersMu serializes envtest's AddUser, which is not safe for concurrent use (scenarios run
	// at once).
	usersMu sync.Mutex
}

// addUser adds an envtest user; safe for concurrent use.
func (e *Environment) addUser(name string, groups []string) (*envtest.AuthenticatedUser, error) {
	e.usersMu.Lock()
	defer e.usersMu.Unlock()
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u, nil
}

// Start starts the control plane, installs the CRDs of config/crd/bases and, when asked, starts
// the simulator and builds the programs of o.Build. Stop it with Stop. An error wraps ErrNoAssets
// when the envtest binaries are missing.
func Start(o Options) (*Environment, error) {
	e := &Environment{Root: o.Root, Scheme: operator.Scheme()}
	if e.Root == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		e.Root = root
	}
	built := buildAll(e.Root, o.Build)
	if err := e.start(o); err != nil {
		<-built
		return nil, err
	}
	if err := <-built; err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

// buildAll builds bins at once; the error of every failed build arrives on the channel.
func buildAll(root string, bins []Binary) <-chan error {
	done := make(chan error, 1)
	go func() {
		errs := make(chan error, len(bins))
		for _, b := range bins {
			go func() { errs <- Build(filepath.Join(root, b.Module), b.Package, b.Out, b.Race) }()
		}
		var all []error
		for range bins {
			all = append(all, <-errs)
		}
		done <- errors.Join(all...)
	}()
	return done
}

// start starts the control plane and the simulator.
func (e *Environment) start(o Options) error {
	assets := o.Assets
	if assets == "" {
		dir, err := AssetsDir(e.Root)
		if err != nil {
			return err
		}
		assets = dir
	} else if err := CheckAssets(assets); err != nil {
		return err
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 90 * time.Second
	}
	// envtest reads KUBEBUILDER_ASSETS before BinaryAssetsDirectory: make them agree.
	if err := os.Setenv("KUBEBUILDER_ASSETS", assets); err != nil {
		return err
	}
	e.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(e.Root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   e.Scheme,
		ControlPlaneStartTimeout: o.StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := e.env.Start()
	if err != nil {
		_ = e.env.Stop() // a control plane that started but refused the CRDs must not outlive us
		return fmt.Errorf("starting envtest (binaries in %s): %w", assets, err)
	}
	e.Config = cfg
	if e.Client, err = NewClient(cfg, e.Scheme); err != nil {
		return errors.Join(err, e.Stop())
	}
	if o.Simulator != nil {
		if e.Sim, err = StartSimulator(*o.Simulator); err != nil {
			return errors.Join(err, e.Stop())
		}
	}
	return nil
}

// StartSimulator starts the DingTalk simulator with cfg on a free loopback port, with the real
// clock. Start does it for an Environment; a program that starts it on its own (the demo, which
// loads its configuration first) may hand it to Environment.Sim so that Stop closes it.
func StartSimulator(cfg simulator.Config) (*simulator.Server, error) {
	sim, err := simulator.Start(cfg, clock.RealClock{})
	if err != nil {
		return nil, fmt.Errorf("starting the simulator: %w", err)
	}
	return sim, nil
}

// Stop stops the simulator and the control plane.
func (e *Environment) Stop() error {
	var errs []error
	if e.Sim != nil {
		errs = append(errs, e.Sim.Close())
	}
	if e.env != nil {
		errs = append(errs, e.env.Stop())
	}
	return errors.Join(errs...)
}

// NewClient returns an uncached client for cfg that is not rate limited on the client side.
func NewClient(cfg *rest.Config, scheme *runtime.Scheme) (client.Client, error) {
	return client.New(Unthrottled(cfg), client.Options{Scheme: scheme})
}

// Unthrottled is a copy of cfg without client-go's client-side rate limit.
func Unthrottled(cfg *rest.Config) *rest.Config {
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = -1, 0 // a negative QPS turns client-go's rate limiter off
	return fast
}

// AddUser adds a user authenticated by a client certificate, with groups, and returns its
// configuration. RBAC applies to it unless a group is system:masters.
func (e *Environment) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := e.addUser(name, groups)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}

// UserClient is a client authenticated as a user in system:authenticated (and groups).
func (e *Environment) UserClient(name string, groups ...string) (client.Client, error) {
	cfg, err := e.AddUser(name, append([]string{"system:authenticated"}, groups...)...)
	if err != nil {
		return nil, err
	}
	return NewClient(cfg, e.Scheme)
}

// WriteKubeconfig writes a kubeconfig for a user with groups to path (mode 0600).
func (e *Environment) WriteKubeconfig(path, name string, groups ...string) error {
	u, err := e.addUser(name, groups)
	if err != nil {
		return err
	}
	b, err := u.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// AdminKubeconfig writes a kubeconfig for a cluster administrator (system:masters) to path.
func (e *Environment) AdminKubeconfig(path, name string) error {
	return e.WriteKubeconfig(path, name, "system:masters")
}

// ServiceAccountKubeconfig writes, into dir, a kubeconfig whose client certificate names the
// service account's user and groups, so the RBAC bound to that service account applies to
// whoever uses it (a manager process run as the operator's service account). It returns the path.
func (e *Environment) ServiceAccountKubeconfig(dir, namespace, sa string) (string, error) {
	path := filepath.Join(dir, namespace+"-"+sa+".kubeconfig")
	return path, e.WriteKubeconfig(path, "system:serviceaccount:"+namespace+":"+sa,
		"system:serviceaccounts", "system:serviceaccounts:"+namespace, "system:authenticated")
}

// Quiet returns ctx with a logger that discards. API calls made with it never reach the
// managers' log (client-go logs with the context's logger), whose lines a leak scan
// attributes to the managers: a test reading a Secret must not look like a manager logging it.
func Quiet(ctx context.Context) context.Context {
	return logr.NewContext(ctx, logr.Discard())
}
