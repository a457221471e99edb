"""Times as Kubernetes writes them (RFC 3339 in UTC, whole seconds), one way for everyone.

The controller writes a namespace's expiry into an annotation and the claim's status; the
plugin, ``kubectl space`` and the tests read it back. Writing and parsing live here once.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The controller's clock (tests pass their own)."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-30T12:00:00Z``: whole seconds in UTC, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object) -> datetime | None:
    """The time in ``text``, in UTC (UTC assumed when it has no offset); None if it is not
    one."""
    try:
        parsed = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
