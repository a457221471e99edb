"""``-o json`` and ``-o yaml``: the rows the tables show, as data for programs.

The documents are built from the same dataclasses the tables are, field for field, so the
two cannot drift: names become camelCase, times RFC 3339 in UTC, and a part that could not
be read is ``{"items": [], "error": "..."}``. Ages are left out (they are the reader's clock
minus ``created``). docs/kubectl-space.md describes both documents.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from space_dra.kubectl.detail import ClaimDetail
from space_dra.kubectl.model import ClaimSummary
from space_dra.kubectl.table import timestamp

LIST_KIND = "SpaceClaimList"
DESCRIBE_KIND = "SpaceClaimDescription"
FORMATS = ("json", "yaml")


def _camel(name: str) -> str:
    """``resource_id`` -> ``resourceID``, ``expires_at`` -> ``expiresAt``: Kubernetes' spelling."""
    name = re.sub(r"_id$", "_ID", name)
    return re.sub(r"_([a-zA-Z])", lambda m: m.group(1).upper(), name)


def plain(value: Any) -> Any:
    """Dataclasses, tuples and times as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return timestamp(value)
    return value


def list_document(
    rows: Sequence[ClaimSummary], driver: str, warnings: Sequence[str]
) -> dict[str, Any]:
    return {
        "kind": LIST_KIND,
        "driver": driver,
        "items": plain(list(rows)),
        "warnings": list(warnings),
    }


def describe_document(detail: ClaimDetail, driver: str) -> dict[str, Any]:
    fields = plain(detail)
    return {"kind": DESCRIBE_KIND, "driver": driver, "claim": fields.pop("summary"), **fields}


def dump(document: dict[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
