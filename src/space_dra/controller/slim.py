"""What the controller keeps of a claim: the parts :class:`~space_dra.contract.ClaimView`
reads, nothing a tenant can inflate.

The controller caches every ResourceClaim of the cluster (its informer cannot select by
driver), so its memory would depend on what other drivers' claims carry; each claim's JSON
is reduced here before it is parsed. ``tests/unit/test_slim_claim.py`` checks that every
ClaimView accessor reads the same from the slim claim as from the full one.
"""

from __future__ import annotations

from typing import Any

from space_dra.contract import EXTENDED_RESOURCE_CLAIM_ANNOTATION, POD_CLAIM_NAME_ANNOTATION


def slim_claim(raw: dict[str, Any], driver: str) -> dict[str, Any]:
    """A claim's JSON reduced to what :class:`~space_dra.contract.ClaimView` reads, for ``driver``.

    Claims are written by tenants and may carry megabytes of other drivers' configs,
    annotations or labels; the controller caches every claim of the cluster, so it
    keeps only identity, the two annotations it reads, and the allocation, status
    entries and consumers of its own driver.
    """
    meta = raw.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    slim_meta = {
        key: meta[key]
        for key in ("name", "namespace", "uid", "resourceVersion", "generation")
        if key in meta
    }
    for key in ("creationTimestamp", "deletionTimestamp"):
        if meta.get(key):
            slim_meta[key] = meta[key]
    kept = {
        key: annotations[key]
        for key in (POD_CLAIM_NAME_ANNOTATION, EXTENDED_RESOURCE_CLAIM_ANNOTATION)
        if isinstance(annotations.get(key), str)
    }
    if kept:
        slim_meta["annotations"] = kept
    status = raw.get("status") or {}
    allocation = status.get("allocation") or {}
    devices = allocation.get("devices") or {}
    results = [r for r in devices.get("results") or [] if r.get("driver") == driver]
    slim_status: dict[str, Any] = {}
    if results:
        configs = [
            c
            for c in devices.get("config") or []
            if (c.get("opaque") or {}).get("driver") == driver
        ]
        slim_status["allocation"] = {
            **{k: v for k, v in allocation.items() if k != "devices"},
            "devices": {"results": results, "config": configs},
        }
        slim_status["devices"] = [
            d for d in status.get("devices") or [] if d.get("driver") == driver
        ]
        slim_status["reservedFor"] = status.get("reservedFor") or []
    return {
        "apiVersion": raw.get("apiVersion", "resource.k8s.io/v1"),
        "kind": raw.get("kind", "ResourceClaim"),
        "metadata": slim_meta,
        "spec": {"devices": {}},
        "status": slim_status,
    }
