"""Named crash points for fault-injection tests.

``SPACE_DRA_CRASH_AT=<point>[,<point>...]`` makes the process exit abruptly
(``os._exit``, no cleanup, like SIGKILL) when it reaches one of the named points,
so the reliability suite can stop a component at an exact step (after creating a
namespace, before writing status, between writing files and the checkpoint...)
and prove that a restart converges. Unset, a point costs one set lookup.
"""

from __future__ import annotations

import os
import sys

CRASH_EXIT_CODE = 86
_ARMED = frozenset(filter(None, os.environ.get("SPACE_DRA_CRASH_AT", "").split(",")))


def point(name: str) -> None:
    if name in _ARMED:
        sys.stderr.write(f"space-dra: crash point {name!r} reached, exiting\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
