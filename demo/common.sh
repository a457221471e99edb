# Shared settings for the kind demo scripts; override any of them in the environment.
# shellcheck shell=bash
set -euo pipefail

DEMO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${DEMO_DIR}/.." && pwd)"

: "${KIND_CLUSTER_NAME:=space-dra}"
# Kubernetes 1.36: DRA v1 GA, binding conditions beta and on by default.
: "${KIND_NODE_IMAGE:=kindest/node:v1.36.3}"
: "${DRIVER_IMAGE:=localhost/space-dra/driver:$(sed -n 's/^version = "\(.*\)"/\1/p' "${REPO_ROOT}/pyproject.toml")}"
: "${CONTAINER_TOOL:=docker}"
