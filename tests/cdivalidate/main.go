// Command cdivalidate checks CDI specs with the reference CDI library, the same
// code containerd uses to apply them, so a spec the runtime would reject fails
// our tests. Usage: cdivalidate <spec-dir> <qualified-device>...
// It prints the OCI edits the devices produce as JSON, or exits 1 with the errors.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

type result struct {
	Env    []string    `json:"env"`
	Mounts []oci.Mount `json:"mounts"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cdivalidate <spec-dir> <qualified-device>...")
		os.Exit(2)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(os.Args[1]), cdi.WithAutoRefresh(false))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cache:", err)
		os.Exit(1)
	}
	failed := false
	for path, errs := range cache.GetErrors() {
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "spec %s: %v\n", path, e)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
	spec := &oci.Spec{Process: &oci.Process{}}
	if unresolved, err := cache.InjectDevices(spec, os.Args[2:]...); err != nil {
		fmt.Fprintf(os.Stderr, "inject (unresolved %v): %v\n", unresolved, err)
		os.Exit(1)
	}
	out := result{Env: spec.Process.Env, Mounts: spec.Mounts}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
