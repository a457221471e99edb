"""An in-memory :class:`~space_dra.kube.KubeAPI` for unit tests and benchmarks.

It stores lightkube objects in dictionaries and behaves like the API server in
the ways our code depends on (404 for missing objects, tokens with an expiry),
so the plugin's logic can be exercised without a cluster. Tests that need real
Kubernetes behaviour run against the local cluster instead.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.kube import Forbidden, IssuedToken, NotFound


class MemoryKube:
    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], ResourceClaim] = {}
        self.service_accounts: set[tuple[str, str]] = set()
        self.tokens_issued: list[tuple[str, str, int]] = []
        self.calls: list[str] = []

    def put_claim(self, claim: ResourceClaim) -> None:
        assert claim.metadata is not None
        self.claims[(claim.metadata.namespace or "", claim.metadata.name or "")] = claim

    async def get_claim(self, namespace: str, name: str) -> ResourceClaim:
        self.calls.append("get_claim")
        try:
            return self.claims[(namespace, name)]
        except KeyError:
            raise NotFound(
                f"resourceclaims {namespace}/{name} not found", 404, "NotFound"
            ) from None

    async def create_token(
        self, namespace: str, service_account: str, expiration_seconds: int
    ) -> IssuedToken:
        self.calls.append("create_token")
        if (namespace, service_account) not in self.service_accounts:
            raise Forbidden(
                f"cannot create token for {namespace}/{service_account}", 403, "Forbidden"
            )
        self.tokens_issued.append((namespace, service_account, expiration_seconds))
        return IssuedToken(
            token=f"memtoken.{secrets.token_hex(16)}",
            expires_at=datetime.now(UTC) + timedelta(seconds=expiration_seconds),
        )
