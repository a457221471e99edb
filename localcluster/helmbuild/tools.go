//go:build tools

// Package helmbuild pins the Helm release offered to tests and users as .cluster/bin/helm.
// Built with `go build helm.sh/helm/v3/cmd/helm`.
package helmbuild

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
