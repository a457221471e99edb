"""Counts what the property-based tests tried and how it ended, shown after the run."""

from __future__ import annotations

from collections import Counter

import pytest

# The gRPC tests reuse the protocol suite's real plugin server fixture.
from tests.protocol.conftest import dirs, harness  # noqa: F401

TALLY: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY:
        terminalreporter.section("bad input: tried / rejected / accepted")
        for key in sorted(TALLY):
            terminalreporter.write_line(f"{key}: {TALLY[key]}")
