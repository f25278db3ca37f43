//go:build tools

// Package envtest pins the sources of the envtest control-plane binaries
// (kube-apiserver and etcd) so they can be built from the Go module proxy alone.
package envtest

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
