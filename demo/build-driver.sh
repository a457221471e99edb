#!/usr/bin/env bash
# Build the driver image with Docker and load it into the kind cluster's nodes.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"${CONTAINER_TOOL}" build -t "${DRIVER_IMAGE}" -f "${REPO_ROOT}/deployments/container/Dockerfile" "${REPO_ROOT}"
kind load docker-image --name "${KIND_CLUSTER_NAME}" "${DRIVER_IMAGE}"
echo "Loaded ${DRIVER_IMAGE}. Install it with:"
echo "  helm upgrade -i --create-namespace -n space-dra space-dra ${REPO_ROOT}/deployments/helm/space-dra-driver \\"
echo "    --set image.repository=${DRIVER_IMAGE%:*} --set image.tag=${DRIVER_IMAGE##*:}"
