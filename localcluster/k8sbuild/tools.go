//go:build tools

// Package k8sbuild pins the upstream Kubernetes components the local cluster runs.
// Nothing here is compiled into the project: `go build` of the listed commands
// resolves them through this module's replace block (k8s.io/kubernetes cannot be
// built with `go install pkg@version`, see localcluster/README.md).
package k8sbuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
