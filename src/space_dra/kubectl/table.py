"""Text for people: ``list`` as kubectl's columns, ``describe`` as kubectl describe's sections.

Times are relative to ``now``, which the caller passes, so the output of a given snapshot
is fixed (the tests compare it with golden files). A part that could not be read says why in
its own section instead of being left out silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from space_dra.kubectl.detail import ClaimDetail, NamespaceDetail, RequestPolicy
from space_dra.kubectl.model import (
    FAILED,
    READY,
    UNHEALTHY,
    ClaimSummary,
    DeviceSummary,
    Part,
)

NONE = "<none>"
# kubectl's columns: separated by 3 spaces.
GAP = "   "
INDENT = "  "


def human_duration(seconds: float) -> str:
    """An age as kubectl prints it: 45s, 5m30s, 3h20m, 36h, 3d4h, 120d, 2y30d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return _two(minutes, "m", s % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return _two(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return _two(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def age(when: datetime | None, now: datetime) -> str:
    return human_duration((_utc(now) - _utc(when)).total_seconds()) if when else "<unknown>"


def timestamp(when: datetime) -> str:
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def columns(header: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, each as wide as its widest cell; the last one is not padded."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return [
        indent
        + GAP.join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False))
        + (GAP if len(row) > 1 else "")
        + row[-1]
        for row in table
    ]


def state_text(state: str, reason: str | None, expires_at: datetime | None, now: datetime) -> str:
    if state in (FAILED, UNHEALTHY):
        return f"{state}: {reason}" if reason else state
    if state == READY and expires_at is not None:
        verb = "Expiring at" if expires_at > now else "Expired at"
        return f"{verb} {timestamp(expires_at)}"
    return state


def _claim_state(row: ClaimSummary | DeviceSummary, now: datetime) -> str:
    return state_text(row.state, row.reason, row.expires_at, now)


def list_table(rows: Sequence[ClaimSummary], now: datetime, all_namespaces: bool) -> str:
    body = [
        [
            f"{r.namespace}/{r.name}" if all_namespaces else r.name,
            ",".join(r.namespaces) or NONE,
            _claim_state(r, now),
            ",".join(r.pods) or NONE,
            age(r.created, now),
        ]
        for r in rows
    ]
    return "\n".join(columns(["CLAIM", "NAMESPACE", "STATE", "PODS", "AGE"], body)) + "\n"


def _fields(pairs: Sequence[tuple[str, str]], indent: str = "") -> list[str]:
    width = max(len(label) for label, _ in pairs) + 2
    return [f"{indent}{(label + ':').ljust(width)}{value}" for label, value in pairs]


def _flow(value: Any) -> str:
    """A setting's value on one line: YAML flow style for maps and lists."""
    if value is None:
        return "<default>"
    if isinstance(value, dict | list):
        return str(yaml.safe_dump(value, default_flow_style=True, width=10**6)).strip()
    return str(value).lower() if isinstance(value, bool) else str(value)


def _section(
    part: Part[Any],
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    indent: str = INDENT,
    nothing: str = NONE,
) -> list[str]:
    """The rows that could be read, then why the others could not; ``nothing`` if neither."""
    lines = columns(header, rows, indent) if part.items else []
    if part.error:
        lines.append(f"{indent}{part.error}")
    return lines or [f"{indent}{nothing}"]


def _policy(policy: RequestPolicy) -> list[str]:
    lines = [f"Policy (request {policy.request}):"]
    if policy.error or policy.settings is None or policy.policy is None:
        return [*lines, f"{INDENT}refused: {policy.error}"]
    lines.append(f"{INDENT}Settings:")
    lines += _fields([(k, _flow(v)) for k, v in policy.settings.items()], INDENT * 2)
    lines.append(f"{INDENT}Policy (the installation's, narrowed by the DeviceClass):")
    lines += _fields([(k, _flow(v)) for k, v in policy.policy.items()], INDENT * 2)
    return lines


def _namespace(ns: NamespaceDetail, now: datetime) -> list[str]:
    pairs = [("Phase", ns.phase or "<cannot read the Namespace>")]
    if ns.expires_at is not None:
        when = ns.expires_at
        relative = f"in {age(now, when)}" if when > now else f"{age(when, now)} ago"
        pairs.append(("Expires", f"{timestamp(when)} ({relative})"))
    lines = [f"Namespace {ns.name}:", *_fields(pairs, INDENT), f"{INDENT}Objects:"]
    rows = [[o.kind, o.name, o.detail, o.purpose] for o in ns.objects.items]
    return lines + _section(ns.objects, ["KIND", "NAME", "DETAIL", "PURPOSE"], rows, INDENT * 2)


def describe_text(detail: ClaimDetail, now: datetime) -> str:
    s = detail.summary
    pairs = [("Name", s.name), ("Namespace", s.namespace), ("UID", detail.uid)]
    if s.pod_claim_name or detail.generated_for:
        pairs.append(
            ("Generated for", f"pod {detail.generated_for or NONE}, as {s.pod_claim_name or NONE}")
        )
    state = _claim_state(s, now)
    if s.state != READY and s.message:
        state += f": {s.message}" if s.state in (FAILED, UNHEALTHY) else f" ({s.message})"
    pairs += [
        ("State", state),
        ("Namespaces", ", ".join(s.namespaces) or NONE),
        ("Created", f"{timestamp(s.created)} ({age(s.created, now)} ago)" if s.created else NONE),
    ]
    lines = _fields(pairs)

    lines += ["", "Devices:"]
    if s.devices:
        rows = [
            [d.request, f"{d.pool}/{d.device}", d.namespace or NONE, _claim_state(d, now)]
            for d in s.devices
        ]
        lines += columns(["REQUEST", "DEVICE", "NAMESPACE", "STATE"], rows, INDENT)
    else:
        lines.append(f"{INDENT}{NONE} (not allocated yet; the policy is applied at allocation)")

    if detail.policies:
        installation = detail.installation
        lines += ["", f"Installation policy: ConfigMap {installation.config_map}"]
        if installation.error:
            lines.append(
                f"{INDENT}{installation.error}; the settings below are resolved without it "
                "and may differ from what the controller applied"
            )
    for policy in detail.policies:
        lines += ["", *_policy(policy)]
    for ns in detail.namespaces:
        lines += ["", *_namespace(ns, now)]

    lines += ["", "Pods:"]
    lines += _section(
        detail.pods, ["NAME", "PHASE"], [[p.name, p.phase] for p in detail.pods.items]
    )
    lines += ["", "Health:"]
    lines += _section(
        detail.health,
        ["POD", "CONTAINER", "RESOURCE", "HEALTH", "MESSAGE"],
        [[h.pod, h.container, h.resource, h.health, h.message or ""] for h in detail.health.items],
        # The kubelet reports device health in pod status from Kubernetes 1.36 on.
        nothing=f"{NONE} reported by the kubelet" if detail.pods.items else NONE,
    )
    lines += ["", "Events:"]
    lines += _section(
        detail.events,
        ["LAST SEEN", "TYPE", "REASON", "MESSAGE"],
        [
            [
                age(e.last_seen, now),
                e.type,
                e.reason,
                e.message + (f" (x{e.count})" if e.count > 1 else ""),
            ]
            for e in detail.events.items
        ],
    )
    return "\n".join(line.rstrip() for line in lines) + "\n"
