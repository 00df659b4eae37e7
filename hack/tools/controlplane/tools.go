//go:build tools

// Package tools pins the test control plane: kube-apiserver and kubectl, and the etcd server of the
// same module graph (k8s.io/apiserver requires it for its own embedded test etcd), so that one
// `go build` compiles the packages the three share once.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
