#!/usr/bin/env bash
# Delete the kind cluster made by create-cluster.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

kind delete cluster --name "${KIND_CLUSTER_NAME}"
