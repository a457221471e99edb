"""`helm upgrade` from the previous version to this one with claims in use, then `helm rollback`.

The previous version (tests/upgrade/previous.py) is installed with a claim in use; the upgrade
follows docs/upgrade.md (the release's values, checked against the new chart, then upgraded);
claims are made while the components roll and after. Then the same in reverse with `helm
rollback`. Through both: running pods keep their container, namespace and credentials (the
mounted token keeps working and keeps being replaced, by the new plugin), no namespace the
driver made is deleted or re-created, and new claims get working namespaces.

Tokens cannot live shorter than 10 minutes (the API server's minimum for a TokenRequest), so
a refresh at 80 % of the lifetime would take 8 minutes; the plugin also re-mints every token at
least every ``kubeletPlugin.health.credentialCheckInterval`` (its credential check), which the
test sets to a few seconds, so a rotation is seen within the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster import ClusterHandle
from tests.support.chart import ChartRelease
from tests.support.hostdriver import CHART
from tests.support.workloads import wait_namespace_released
from tests.upgrade import consumers
from tests.upgrade.consumers import Consumer
from tests.upgrade.previous import PreviousVersion
from tests.upgrade.release import (
    RELEASE,
    RELEASE_NAMESPACE,
    documented,
    helm_revision,
    operator_shell,
    running_images,
    wait_rolled_out,
)

pytestmark = pytest.mark.upgrade

VALUES = {
    # Room for the five claims and the warm pool (4) at once: no warm namespace is surplus.
    "pool.size": "12",
    "controller.resyncPeriod": "10",
    # The credential check re-mints every token this often: rotations within the test.
    "kubeletPlugin.health.credentialCheckInterval": "5",
}


def _change_and_check(
    cluster: ClusterHandle,
    release: ChartRelease,
    change: Callable[[], object],
    running: list[Consumer],
    workspace: str,
    prefix: str,
) -> list[Consumer]:
    """Make ``change`` (returns once the objects are written; the pods roll afterwards) and
    check everything the test promises; returns the consumers started during and after it."""
    namespaces = consumers.namespace_uids(cluster)
    started = time.monotonic()
    change()
    consumers.start(cluster, workspace, f"{prefix}during")
    during = consumers.running(cluster, workspace, f"{prefix}during", timeout=180)
    during_at = time.monotonic() - started
    wait_rolled_out(release)
    rolled = time.monotonic() - started
    what = prefix or "upgrade"
    print(f"{what}: a claim made during it ready at {during_at:.1f}s, rolled out at {rolled:.1f}s")
    assert running_images(release) == {release.image}
    consumers.start(cluster, workspace, f"{prefix}after")
    after = consumers.running(cluster, workspace, f"{prefix}after")

    for consumer in running:
        consumers.assert_undisturbed(cluster, consumer)
        # Only the new pods run now: a rotation from here on is theirs.
        consumers.wait_token_rotated(cluster, consumer, consumers.token(cluster, consumer))
        consumers.assert_credentials_work(cluster, consumer)
    for consumer in (during, after):
        consumers.assert_credentials_work(cluster, consumer)
    consumers.assert_none_replaced(cluster, namespaces)
    got = [c.namespace for c in [*running, during, after]]
    assert len(set(got)) == len(got), f"two claims share a namespace: {got}"
    return [during, after]


def test_upgrade_then_rollback_keep_pods_namespaces_and_credentials(
    local_cluster: ClusterHandle,
    previous: PreviousVersion,
    driver_image: tuple[str, str],
    workspace: str,
    tmp_path: Path,
) -> None:
    old_values, unknown = previous.supported(VALUES)
    if unknown:
        print(f"the chart of {previous.short} has no {', '.join(unknown)}")
    old = ChartRelease(
        local_cluster,
        image=previous.image,
        image_digest=previous.image_digest,
        chart=previous.chart,
        values=old_values,
    )
    old.install()
    old_revision = helm_revision(local_cluster)
    assert running_images(old) == {previous.image}
    consumers.start(local_cluster, workspace, "before")
    before = consumers.running(local_cluster, workspace, "before")
    consumers.assert_credentials_work(local_cluster, before)

    # docs/upgrade.md: the release's values, checked against the new chart, then upgraded
    # with them and the new image.
    values = tmp_path / "current-values.yaml"
    saved = operator_shell(
        local_cluster,
        documented(
            "upgrade.md",
            "helm get values -n space-dra space-dra -o yaml > current-values.yaml",
        ).replace("current-values.yaml", str(values)),
    )
    assert saved.returncode == 0, saved.stderr
    documented(
        "upgrade.md",
        "helm lint --strict -f current-values.yaml deployments/helm/space-dra-driver",
    )
    lint = local_cluster.run(
        [str(local_cluster.helm_path), "lint", "--strict", "-f", str(values), str(CHART)],
        check=False,
    )
    assert lint.returncode == 0, f"the previous release's values on the new chart:\n{lint.stdout}"
    new = ChartRelease(
        local_cluster,
        image=driver_image[0],
        image_digest=driver_image[1],
        values=dict(VALUES),
        values_file=values,
    )
    documented(
        "upgrade.md", "helm upgrade -n space-dra space-dra deployments/helm/space-dra-driver"
    )
    upgraded = _change_and_check(
        local_cluster, new, lambda: new.install(wait=False), [before], workspace, ""
    )

    # helm rollback to the previous version's revision: the same guarantees in reverse.
    documented("upgrade.md", "helm rollback -n space-dra space-dra <revision>")
    rolled_back = _change_and_check(
        local_cluster,
        old,
        lambda: local_cluster.helm("rollback", "-n", RELEASE_NAMESPACE, RELEASE, str(old_revision)),
        [before, *upgraded],
        workspace,
        "rb",
    )

    # The previous version deletes what either version made once the claims go.
    everyone = [before, *upgraded, *rolled_back]
    local_cluster.kubectl("delete", "pods,resourceclaims", "--all", "-n", workspace, timeout=180)
    for consumer in everyone:
        wait_namespace_released(local_cluster, consumer.namespace, timeout=90)
