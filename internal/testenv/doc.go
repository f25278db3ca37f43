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

// Package testenv is the one test harness of the repository: every suite (controllers, test/e2e,
// test/reliability, api admission), the benchmark (hack/bench) and the demo (hack/demo) start
// their world with it, so that there is one way to run a control plane, a manager and the
// DingTalk simulator, and one leak scanner. Functions return errors rather than taking a
// *testing.T, so programs can use them; internal/testenv/envtesting wraps them for tests.
//
// # A control plane
//
// Start runs an envtest kube-apiserver and etcd with the DingTalkToken CRD of config/crd/bases
// and the operator's scheme, and, with Options.Simulator, the DingTalk simulator on a free
// loopback port. The binaries come from $KUBEBUILDER_ASSETS, else from bin/k8s/<version> as
// `make envtest` builds them (the version is read from hack/envtest/go.mod, as the Makefile
// does); without them the error wraps ErrNoAssets.
//
//	env, err := testenv.Start(testenv.Options{Simulator: &simulator.Config{}})
//	defer env.Stop()
//
// Environment.Client is uncached and not rate limited (Unthrottled gives such a configuration for
// other clients). API calls a test makes with a context from Quiet never reach the managers' log,
// which the leak scan reads as theirs; SetLogger points controller-runtime's and client-go's
// logger at a buffer, at the manager's --zap-log-level. A program that loads the simulator's
// configuration itself starts it with StartSimulator. AddUser, UserClient,
// WriteKubeconfig, AdminKubeconfig and ServiceAccountKubeconfig give other identities, for RBAC
// tests and for processes run as the operator's service account.
//
// # The operator in-process
//
// Environment.StartManager builds the manager with internal/operator.NewManager, exactly as
// cmd/main.go does, from operator.Options (ManagerOptions gives the shipped defaults pointed at the
// simulator, with no metrics or probe server) and operator.Hooks: a logger, a clock, and wrappers
// of the reconciler's client and uncached reader for fault injection and counting (Intercept
// adapts controller-runtime's interceptor.Funcs). Several managers can run in one process.
//
// # Built binaries as processes
//
// Build compiles a main package (with -race when RaceEnabled, as the test binary was built);
// StartProcess runs it with its output in memory or in a file, with Logged, Tail, Flag, Kill
// (SIGKILL) and Terminate (SIGTERM); FreeAddr picks loopback ports; Get and Scrape read the
// operator's probes and /metrics (InsecureHTTP: its certificate is self-signed), Scrape and
// Gather (the metrics of this process's managers) parse through expfmt into Metrics.
//
// # An API server that goes away
//
// APIServerProxy starts a Proxy, a TCP proxy in front of the control plane that a test can Pause
// (every connection through it is cut, new ones refused) and Resume; KubeconfigVia rewrites a
// kubeconfig to reach the API server through it, for a manager process that must lose the API
// server while the test's own clients keep it.
//
// # Fixtures
//
// CreateNamespace (unique names: envtest never finishes deleting a namespace), CreateSecret,
// UpdateSecret, Update (conflict retries), NewToken, GetToken, UpdateToken, Condition,
// WaitForToken with HasCondition, IsReady or RefreshedAfter, EventCounts, EventReasons and
// CheckOwnedBy.
//
// # Leaks
//
// Sensitive collects the credentials and tokens a suite handled; LeakScan.Run looks for them,
// raw, hex-encoded or base64-encoded at any alignment, and for anything shaped like a simulator
// token, in the managers' logs (client-go's hex dumps of bodies decoded), every event, every
// status and the metrics; it also fails on a logged request or response body and on a target
// Secret holding a credential or refresh token. A suite runs it once, after all its scenarios.
// Sensitive.ScanOutput scans the output of a program that is not a manager (dingtalk-token-proxy's
// log and metrics) the same way.
//
// # A mounted Secret
//
// SecretVolume writes a directory as the kubelet writes a mounted Secret volume (timestamped
// directories behind an atomically swapped ..data link, keys as links through it), for tests,
// the bench and the demo that play the kubelet's part for dingtalk-token-proxy.
package testenv
