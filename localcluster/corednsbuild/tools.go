//go:build tools

// Package corednsbuild pins the CoreDNS release the local cluster runs as its cluster DNS (a host
// process serving the kubernetes plugin). Built with `go build github.com/coredns/coredns`.
package corednsbuild

import (
	_ "github.com/coredns/coredns"
)
