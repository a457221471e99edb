"""The compatibility report of `make test-matrix` (localcluster/matrix.py), without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

from localcluster import matrix

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.e2e.test_demo" name="test_ok" time="1.0"/>
<testcase classname="tests.e2e.test_demo" name="test_bad" time="1.0">
<failure message="x"/></testcase>
<testcase classname="tests.multinode.test_network" name="test_skip" time="0"><skipped/></testcase>
<testcase classname="tests.security.test_security" name="test_err" time="0"><error/></testcase>
</testsuite></testsuites>
"""


def test_junit_counts(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    counts = matrix.junit_counts(path)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 2, 1)
    assert counts["failed_tests"] == [
        "tests.e2e.test_demo::test_bad",
        "tests.security.test_security::test_err",
    ]


def _result(version: str, bc: bool, failed: int = 0) -> dict[str, object]:
    return {
        "version": version,
        "date": "2026-11-30",
        "nodes": 2,
        "markers": "e2e",
        "seconds": {"build": 600, "up": 20, "tests": 900},
        "pytest_exit": 1 if failed else 0,
        "passed": 10,
        "failed": failed,
        "skipped": 0,
        "failed_tests": ["tests.e2e.t::x"] if failed else [],
        "facts": {
            "feature_gates": {"DRADeviceBindingConditions": bc},
            "binding_conditions_published": bc,
            "device_health_in_pod_status": bc,
        },
    }


def test_render_lists_releases_in_order_with_what_differs() -> None:
    text = matrix.render({"1.37.2": _result("1.37.2", True), "1.34.4": _result("1.34.4", False, 1)})
    rows = [line for line in text.splitlines() if line.startswith("| 1.")]
    assert [r.split("|")[1].strip() for r in rows] == ["1.34.4", "1.37.2"]
    assert "| 1.34.4 | 2026-11-30 | 2 | 10 | 1 | 0 | no | no | not in this release |" in text
    assert "| 1.37.2 | 2026-11-30 | 2 | 10 | 0 | 0 | yes | yes |" in text
    assert "failed: `tests.e2e.t::x`" in text
    assert "What you lose on 1.34 and 1.35" in text


def test_the_committed_report_is_rendered_from_the_committed_results() -> None:
    # docs/compatibility.md is generated: a hand edit (or a template change without
    # `python -m localcluster.matrix --render-only`) shows here.
    results = json.loads(matrix.RESULTS.read_text())
    assert matrix.REPORT.read_text() == matrix.render(results)
