"""``space-dra cleanup``: remove the namespaces a driver left behind, and only those.

Once the controller is uninstalled nothing garbage-collects any more, so namespaces whose
claims were not deleted first stay behind. This makes the controller's own decision
(:func:`~space_dra.controller.gc.judge`) once, from fresh lists: a namespace is deleted
only if it carries the driver's labels *and* an ownership signature that verifies with
the installation's key (a label anyone could copy is never enough), it is not protected,
and no claim still holds it. It is a dry run unless asked to delete, and a missing key
deletes nothing. Each deletion is conditional on the namespace's UID, so a namespace
re-created under the same name meanwhile is left alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lightkube.resources.core_v1 import Namespace
from lightkube.resources.resource_v1 import ResourceClaim

from space_dra.contract import ClaimView, ManagementLabels, NamespaceView
from space_dra.controller.gc import Verdict, judge
from space_dra.controller.ownership import Signer, read_signer
from space_dra.kube import Conflict, ControllerAPI, NotFound, connect

FIELD_MANAGER = "space-dra-cleanup"

# What to tell the reader about a namespace that is kept, by the verdict's reason.
_KEPT_BECAUSE = {
    "in use": "a claim still holds it: delete the claim first",
    "unverified": "no valid ownership signature: not provably the driver's, left alone",
    "protected": "protected",
    "terminating": "already being deleted",
}


@dataclass(frozen=True)
class Decision:
    namespace: NamespaceView
    verdict: Verdict

    def line(self, deleting: bool) -> str:
        view, why = self.namespace, self.verdict.why
        if self.verdict.delete:
            action = "deleted" if deleting else "would delete"
        else:
            action, why = "kept", _KEPT_BECAUSE.get(why, why)
        claim = view.claim_uid or "-"
        return f"{action:<13} {view.name:<40} claim {claim}: {why}"


async def plan(
    kube: ControllerAPI, driver: str, signer: Signer, protected: frozenset[str]
) -> list[Decision]:
    """What the garbage collection would do with each of the driver's namespaces now."""
    labels = ManagementLabels(driver)
    namespaces, _ = await kube.list(Namespace, labels=labels.managed)
    claims, _ = await kube.list(ResourceClaim)
    by_uid = {view.uid: view for view in (ClaimView(claim, driver) for claim in claims)}
    decisions = []
    for namespace in namespaces:
        view = NamespaceView.of(namespace, labels)
        verdict = judge(view, by_uid, protected, signer.owns(view))
        decisions.append(Decision(view, verdict))
    return sorted(decisions, key=lambda d: d.namespace.name)


async def apply(kube: ControllerAPI, decisions: list[Decision]) -> list[Decision]:
    """Delete what the decisions say; return those actually deleted."""
    deleted = []
    for decision in decisions:
        if not decision.verdict.delete:
            continue
        view = decision.namespace
        try:
            await kube.delete(Namespace, view.name, uid=view.uid or None)
        except (NotFound, Conflict):
            continue  # gone already, or the name belongs to another namespace now
        deleted.append(decision)
    return deleted


async def cleanup(
    kube: ControllerAPI,
    args: argparse.Namespace,
    say: Callable[[str], None] = print,
) -> int:
    """Report every namespace of the driver and delete the leftovers if ``args.delete``."""
    protected = frozenset(filter(None, args.protected_namespaces.split(","))) | {args.namespace}
    signer = await read_signer(kube, args.namespace, args.ownership_secret)
    decisions = await plan(kube, args.driver_name, signer, protected)
    done = await apply(kube, decisions) if args.delete else []
    for decision in decisions:
        if not decision.verdict.delete or not args.delete or decision in done:
            say(decision.line(args.delete))
    leftovers = sum(decision.verdict.delete for decision in decisions)
    if not args.delete and leftovers:
        say(f"dry run: {leftovers} namespace(s) would be deleted; add --delete to delete them")
    elif not decisions:
        say(f"no namespace carries the labels of driver {args.driver_name}")
    return 0


def kubeconfig_for(given: str | None) -> str | None:
    """--kubeconfig or $KUBECONFIG, else kubectl's ~/.kube/config, else in-cluster: an
    administrator runs this from a workstation, not from a pod."""
    if given:
        return given
    default = Path.home() / ".kube" / "config"
    return str(default) if default.is_file() else None


async def run(args: argparse.Namespace) -> int:
    async with connect(kubeconfig_for(args.kubeconfig), FIELD_MANAGER) as kube:
        return await cleanup(kube, args)
