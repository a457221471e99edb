"""Without binding conditions nobody re-allocates a claim: a failure must show where the user
looks (the pod), and a rejection by the API server must heal by itself once its cause is gone."""

from __future__ import annotations

from typing import Any

from lightkube.resources.core_v1 import ResourceQuota

from space_dra.config import SOURCE_CLAIM
from space_dra.kube import Invalid
from space_dra.kube_memory import MemoryKube
from tests.support.claims import make_claim, namespace_config, new_uid
from tests.support.controller import (
    device_state,
    events,
    eventually,
    namespaces,
    running_reconciler,
)


def quota_config(**hard: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    return [(SOURCE_CLAIM, namespace_config(quota=hard), ["ns"])]


async def test_a_rejection_heals_once_the_api_server_accepts_again() -> None:
    kube = MemoryKube()
    broken = True

    def webhook(verb: str, quota: Any) -> None:
        if broken:
            raise Invalid("admission webhook denied the request: quotas are frozen", 422)

    kube.admit(ResourceQuota, webhook)
    async with running_reconciler(kube, rejection_memory_seconds=0.3):
        kube.put(make_claim(new_uid(), configs=quota_config(pods="3")))
        failure = await eventually(lambda: device_state(kube).failure, "rejected")
        assert failure.startswith("Rejected: ") and "frozen" in failure
        await eventually(lambda: namespaces(kube) == {}, "the half-made namespace collected")

        broken = False  # the admin fixes the webhook; nobody touches the claim
        record = await eventually(lambda: device_state(kube).record, "recovered", within=5)
        state = device_state(kube)
        assert state.ready and state.failure is None
        assert list(namespaces(kube)) == [record.namespace]


async def test_a_config_refusal_is_not_retried() -> None:
    kube = MemoryKube()
    async with running_reconciler(kube, rejection_memory_seconds=0.1):
        kube.put(make_claim(new_uid(), configs=[(SOURCE_CLAIM, namespace_config(role=""), ["ns"])]))
        await eventually(lambda: device_state(kube).failure, "refused")
        calls = len(kube.calls)
        await eventually(lambda: len(kube.calls) == calls, "quiet", within=1)
        assert "create Namespace" not in kube.calls


async def test_a_refusal_is_reported_on_the_pods_that_wait_for_the_claim() -> None:
    kube = MemoryKube()
    pod_uid = new_uid()
    async with running_reconciler(kube):
        kube.put(
            make_claim(
                new_uid(),
                configs=[(SOURCE_CLAIM, namespace_config(role="cluster-admin"), ["ns"])],
                reserved_for=[("worker", pod_uid)],
            )
        )
        await eventually(lambda: device_state(kube).failure, "refused")
        on_pod = await eventually(
            lambda: [
                e for e in events(kube) if e.involvedObject and e.involvedObject.kind == "Pod"
            ],
            "an Event on the pod",
        )
        [event] = on_pod
        assert event.type == "Warning" and event.reason == "InvalidNamespaceConfig"
        assert event.involvedObject is not None
        assert (event.involvedObject.name, event.involvedObject.uid) == ("worker", pod_uid)
        assert "ResourceClaim test-claim" in (event.message or "")
        assert "cluster-admin" in (event.message or "")
