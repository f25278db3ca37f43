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

// Package e2e runs the manager binary as real processes against an envtest control plane and
// the DingTalk simulator, with the RBAC that config/ ships: flags, leader election and
// failover, metrics behind authentication and authorization, probes, graceful shutdown,
// namespaced mode and the ValidatingAdmissionPolicy.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/onsi/gomega"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/testenv/envtesting"
)

const (
	// The names config/default gives the operator.
	operatorNamespace = "dingtalk-token-operator-system"
	operatorSA        = "dingtalk-token-operator-controller-manager"
)

var (
	env        *envtesting.Env
	k8s        client.Client // env.Client: uncached, straight to the API server
	clientset  *kubernetes.Clientset
	sim        *simulator.Server
	managerBin string // the manager binary built from ./cmd
	// operatorKubeconfig authenticates as the operator's service account (a client certificate
	// with its user name), so the processes run with exactly the RBAC config/default grants.
	operatorKubeconfig string
)

func TestMain(m *testing.M) {
	os.Exit(envtesting.Main(m, testenv.Options{
		Simulator: &simulator.Config{},
		// Built like `make build` (with -race when the tests run with it).
		Build: []testenv.Binary{{Package: "./cmd", Out: "manager", Race: testenv.RaceEnabled}},
	}, setup))
}

// setup wires the suite to the environment: the clients, config/default's namespace, RBAC and
// admission policy, and the operator's service account.
func setup(e *envtesting.Env, dir string) error {
	env, k8s, sim = e, e.Client, e.Sim
	managerBin = filepath.Join(dir, "manager")
	clientset = kubernetes.NewForConfigOrDie(e.Config)
	if err := installDefault(e.Root); err != nil {
		return fmt.Errorf("installing config/default: %w", err)
	}
	var err error
	operatorKubeconfig, err = e.ServiceAccountKubeconfig(dir, operatorNamespace, operatorSA)
	return err
}

// installDefault applies what config/default renders except the workload and the CRD (envtest
// installed it): the namespace, RBAC and the admission policy.
func installDefault(root string) error {
	objs, err := render(filesys.MakeFsOnDisk(), filepath.Join(root, "config", "default"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return boolInt(b.GetKind() == "Namespace") - boolInt(a.GetKind() == "Namespace") // namespaces first
	})
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "Service", "CustomResourceDefinition":
			continue
		}
		if err := k8s.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func render(fsys filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, r := range m.Resources() {
		obj, err := r.Map()
		if err != nil {
			return nil, err
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out, nil
}

// startManager runs the manager binary with --kubeconfig and args; the test's cleanup kills it
// and, when the test failed, prints the end of its log.
func startManager(t *testing.T, name, kubeconfig string, args ...string) *testenv.Process {
	t.Helper()
	return envtesting.StartProcess(t, name, managerBin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
}

// scrape reads the metrics endpoint of a manager process with token and parses the exposition.
func scrape(p *testenv.Process, token string) (testenv.Metrics, error) {
	return testenv.Scrape(context.Background(), testenv.InsecureHTTP, "https://"+p.Flag("metrics-bind-address")+"/metrics", token)
}

// startLeaderPair starts two managers with leader election (the operator's identity, the
// simulator, metrics and probes on free addresses) and waits until exactly one leads.
func startLeaderPair(t *testing.T, g gomega.Gomega) (leader, standby *testenv.Process) {
	t.Helper()
	args := func() []string {
		return []string{
			"--leader-elect", "--leader-election-namespace=" + operatorNamespace,
			"--dingtalk-endpoint=" + sim.URL(),
			"--metrics-bind-address=" + envtesting.FreeAddr(t),
			"--health-probe-bind-address=" + envtesting.FreeAddr(t),
		}
	}
	a := startManager(t, "a", operatorKubeconfig, args()...)
	b := startManager(t, "b", operatorKubeconfig, args()...)
	g.Eventually(func() int {
		n := 0
		for _, p := range []*testenv.Process{a, b} {
			if p.Logged(leaseAcquired) {
				leader, n = p, n+1
			}
		}
		return n
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(gomega.Equal(1), "exactly one manager leads")
	standby = a
	if leader == a {
		standby = b
	}
	t.Logf("manager %s leads, %s stands by", leader.Name, standby.Name)
	return leader, standby
}
