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
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/operator"
	"github.com/dingtalk-token-operator/dingtalk-token-operator/internal/simulator"
)

const (
	// The names config/default gives the operator.
	operatorNamespace = "dingtalk-token-operator-system"
	operatorSA        = "dingtalk-token-operator-controller-manager"
)

var (
	root       string // repository root
	testEnv    *envtest.Environment
	restCfg    *rest.Config
	k8s        client.Client
	clientset  *kubernetes.Clientset
	sim        *simulator.Server
	managerBin string // the manager binary built from ./cmd
	// operatorKubeconfig authenticates as the operator's service account (a client certificate
	// with its user name), so the processes run with exactly the RBAC config/default grants.
	operatorKubeconfig string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	root = filepath.Join(filepath.Dir(file), "..", "..")
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or `make envtest` and "+
			"KUBEBUILDER_ASSETS=$PWD/bin/k8s/<version> go test ./test/e2e/")
		return 1
	}
	tmp, err := os.MkdirTemp("", "dingtalk-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)

	// Build the binary while the control plane starts.
	built := make(chan error, 1)
	managerBin = filepath.Join(tmp, "manager")
	go func() { built <- buildManager(managerBin) }()

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   operator.Scheme(),
		ControlPlaneStartTimeout: 90 * time.Second,
	}
	restCfg, err = testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		<-built
		return 1
	}
	defer func() { _ = testEnv.Stop() }()

	if err := <-built; err != nil {
		fmt.Fprintln(os.Stderr, "building the manager:", err)
		return 1
	}
	if k8s, err = client.New(restCfg, client.Options{Scheme: operator.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	clientset = kubernetes.NewForConfigOrDie(restCfg)
	if sim, err = simulator.Start(simulator.Config{}, clock.RealClock{}); err != nil {
		fmt.Fprintln(os.Stderr, "starting the simulator:", err)
		return 1
	}
	defer sim.Close()

	if err := installDefault(); err != nil {
		fmt.Fprintln(os.Stderr, "installing config/default:", err)
		return 1
	}
	operatorKubeconfig, err = kubeconfigFor(tmp, operatorNamespace, operatorSA)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildManager builds ./cmd like `make build` (with -race when the tests run with it, which
// reuses the packages the test build compiled).
func buildManager(out string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return nil
}

// installDefault applies what config/default renders except the workload and the CRD (envtest
// installed it): the namespace, RBAC and the admission policy.
func installDefault() error {
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

// kubeconfigFor writes a kubeconfig whose client certificate names the service account's user,
// so RBAC bindings to that service account apply to it.
func kubeconfigFor(dir, namespace, sa string) (string, error) {
	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + namespace + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		return "", err
	}
	b, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, namespace+"-"+sa+".kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
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

// createNamespace creates a namespace named after the test (envtest never deletes namespaces).
func createNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}
