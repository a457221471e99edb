"""The namespace driver's settings, read by its plan and its state alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from space_dra.config import Policy


@dataclass(frozen=True)
class DriverOptions:
    driver_name: str
    cdi_dir: Path
    artifact_dir: Path
    checkpoint_path: Path
    ca_pem: bytes
    # Tokens are bound to this Node object and minted with this node's authorization
    # (the API server lets a node mint only for claims with a pod on it).
    node_name: str = ""
    # Replaces the server URL the controller recorded (for nodes that reach the
    # API server differently from the rest of the cluster).
    server_override: str | None = None
    # How long prepare waits for the controller's record; well inside the
    # kubelet's 45 s timeout so the kubelet gets our error, not its own.
    wait_timeout: float = 20.0
    # Refresh a token once this fraction of its lifetime has passed.
    refresh_fraction: float = 0.8
    # Token lifetime when no NamespaceConfig sets one (policy bounds still apply).
    default_token_seconds: int = 3600
    # Health (docs/health.md). Each prepared claim is read this often (jittered +-20 %),
    # so the controller's verdicts reach the pod's status well within 30 s.
    health_check_interval: float = 10.0
    # Each device's token is re-minted at least this often (jittered), also when it lives
    # much longer: minting is the only way this plugin's RBAC lets it notice that the
    # namespace or its permission to mint there is gone.
    credential_check_interval: float = 60.0
    # Failed token requests (or claim reads) in a row before a device turns Unhealthy
    # (requests refused) or Unknown (API server unreachable).
    health_failure_threshold: int = 3
    # Mint each device's token when the controller lists this node on its namespace,
    # before the kubelet's prepare (plugin.ahead); needs list and watch on namespaces.
    mint_ahead: bool = False
    # The installation's policy (the same file the controller reads), so a claim's
    # settings resolve here exactly as they did in the controller.
    policy: Policy = field(default_factory=Policy)
