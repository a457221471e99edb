"""kubectl space's output: golden files for list and describe in every format, and the pieces.

The golden files in tests/unit/golden/kubectl_space/ are the output for the scene in
tests/unit/kubectl_scene.py at its fixed time. After a deliberate change of the output,
rewrite them with ``SPACE_DRA_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_kubectl_render.py``
and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from lightkube.resources.core_v1 import Event, Namespace
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from space_dra.kube import Forbidden
from space_dra.kube_memory import MemoryKube
from space_dra.kubectl.cli import Options, Result, run_describe, run_list
from space_dra.kubectl.fetch import FetchError
from space_dra.kubectl.table import age, columns, human_duration, timestamp
from tests.unit import kubectl_scene as scene

GOLDEN = Path(__file__).parent / "golden" / "kubectl_space"
UPDATE = os.environ.get("SPACE_DRA_UPDATE_GOLDEN") == "1"


def options(output: str = "table") -> Options:
    return Options(driver=scene.DRIVER, device_class=scene.DRIVER, output=output)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with SPACE_DRA_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"output differs from {path}"


async def listed(output: str, namespace: str | None, kube: MemoryKube | None = None) -> Result:
    return await run_list(kube or scene.build(), options(output), namespace, scene.NOW)


async def described(
    output: str, namespace: str, name: str, kube: MemoryKube | None = None
) -> Result:
    return await run_describe(kube or scene.build(), options(output), namespace, name, scene.NOW)


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
@pytest.mark.parametrize("namespace", ["team-a", None])
async def test_list_golden(output: str, namespace: str | None) -> None:
    result = await listed(output, namespace)
    assert result.notes == ()
    scope = namespace or "all"
    check_golden(f"list-{scope}.{'txt' if output == 'table' else output}", result.stdout)


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
@pytest.mark.parametrize(
    ("namespace", "name"),
    [("team-a", "ready"), ("team-a", "bad-role"), ("team-a", "waiting"), ("team-b", "pair")],
)
async def test_describe_golden(output: str, namespace: str, name: str) -> None:
    result = await described(output, namespace, name)
    check_golden(f"describe-{name}.{'txt' if output == 'table' else output}", result.stdout)


async def test_describe_golden_where_rbac_forbids_parts() -> None:
    kube = scene.build()
    forbidden = Forbidden(
        'rolebindings.rbac.authorization.k8s.io is forbidden: User "alice" cannot list '
        'resource "rolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope',
        403,
        "Forbidden",
    )
    kube.fail_next("list", RoleBinding, forbidden)
    kube.fail_next("list", Event, Forbidden("events is forbidden", 403, "Forbidden"))
    result = await described("table", "team-b", "worker-0-space-7x9kq", kube)
    check_golden("describe-worker-forbidden.txt", result.stdout)


@pytest.mark.parametrize("command", ["list", "describe"])
async def test_json_and_yaml_carry_the_same_document(command: str) -> None:
    async def run(output: str) -> str:
        if command == "list":
            return (await listed(output, None)).stdout
        return (await described(output, "team-b", "worker-0-space-7x9kq")).stdout

    assert yaml.safe_load(await run("yaml")) == json.loads(await run("json"))


async def test_table_rows_and_json_items_agree() -> None:
    document = json.loads((await listed("json", None)).stdout)
    lines = (await listed("table", None)).stdout.splitlines()
    assert len(lines) == 1 + len(document["items"])
    for line, item in zip(lines[1:], document["items"], strict=True):
        claim, namespaces, *_ = line.split()
        assert claim == f"{item['namespace']}/{item['name']}"
        assert namespaces == (",".join(item["namespaces"]) or "<none>")


async def test_an_empty_list_says_so_on_stderr_and_a_warning_goes_along() -> None:
    kube = scene.build()
    result = await listed("table", "nobody", kube)
    assert result.stdout == ""
    assert result.notes == (f"No claims of {scene.DRIVER} found in namespace nobody.",)
    kube.fail_next("list", Namespace, Forbidden("namespaces is forbidden", 403, "Forbidden"))
    result = await listed("json", "team-a", kube)
    document = json.loads(result.stdout)
    assert document["warnings"] == [
        "cannot read the driver's Namespaces (expiry times come from claim status only): "
        "namespaces is forbidden"
    ]
    assert result.notes == (f"warning: {document['warnings'][0]}",)


async def test_describe_refuses_a_claim_of_another_driver() -> None:
    with pytest.raises(FetchError) as caught:
        await described("table", "team-a", "gpu-pending")
    assert str(caught.value) == (
        f"ResourceClaim team-a/gpu-pending is not a claim of {scene.DRIVER} "
        "(its requests name the DeviceClasses: gpu)"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (765 * 86400, "2y35d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_read_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_columns_are_as_wide_as_their_widest_cell() -> None:
    assert columns(["A", "LONG HEADER", "Z"], [["wide cell", "x", "last one"]]) == [
        "A           LONG HEADER   Z",
        "wide cell   x             last one",
    ]


def test_times_are_shown_in_utc() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert timestamp(datetime(2026, 1, 1, 1, 0, tzinfo=plus_one)) == "2026-01-01T00:00:00Z"
    assert timestamp(datetime(2026, 1, 1, 1, 0)) == "2026-01-01T01:00:00Z"
    assert age(datetime(2026, 1, 1, 1, 0, tzinfo=plus_one), datetime(2026, 1, 1, 0, 5)) == "5m"
