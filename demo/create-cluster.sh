#!/usr/bin/env bash
# Create a kind cluster (one control-plane, one worker) with CDI enabled in containerd.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

kind create cluster --name "${KIND_CLUSTER_NAME}" --image "${KIND_NODE_IMAGE}" --config - <<KIND
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  # The kubelet passes CDI device IDs to containerd; containerd must resolve them.
  - |-
    [plugins."io.containerd.grpc.v1.cri"]
      enable_cdi = true
nodes:
  - role: control-plane
  - role: worker
KIND
kubectl cluster-info --context "kind-${KIND_CLUSTER_NAME}"
