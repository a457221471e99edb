"""The operator docs name only things that exist: metrics, chart values, the CLI's flags,
and files and sections they link to. (docs/metrics.md is checked row by row in
test_metrics_reference.py; docs/configuration.md is generated.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from space_dra import cli
from space_dra.schema_types import Group, Value
from space_dra.schema_values import VALUES
from tests.support.gotools import REPO
from tests.unit.test_metrics_reference import DEFINED

DOCS = [
    REPO / "README.md",
    REPO / "CHANGELOG.md",
    *(
        REPO / "docs" / f"{name}.md"
        for name in (
            "install",
            "upgrade",
            "uninstall",
            "troubleshooting",
            "architecture",
            "metrics",
        )
    ),
]
# Flags of other tools that the docs show inline next to ours.
OTHER_TOOLS_FLAGS = {"--set", "--set-string", "--set-json", "--wait", "--timeout", "--strict"}
# A command line of ours, in a code block or inline.
OUR_COMMAND = re.compile(r"(?<![\w=/.-])space-dra (?=cleanup|controller|kubelet-plugin|version|--)")
FILE_NAME = re.compile(r"\.(py|md|json|yaml|tpl)$")


def ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(REPO)) for path in paths]


def inline_code(text: str) -> list[str]:
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", without_blocks)


def declared_values(node: Value | Group = VALUES, prefix: str = "") -> dict[str, bool]:
    """Every declared path, True for leaves (whose maps a doc may look into)."""
    name = f"{prefix}{node.name}"
    if isinstance(node, Value):
        return {name: True}
    found = {name: False} if name else {}
    for child in node.children:
        found |= declared_values(child, f"{name}." if name else "")
    return found


def cli_flags() -> set[str]:
    flags: set[str] = set()
    parser = cli.build_parser()
    pending = [parser]
    while pending:
        current = pending.pop()
        for action in current._actions:
            flags.update(option for option in action.option_strings if option.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return flags


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_metric_names_exist(doc: Path) -> None:
    text = re.sub(r"space_dra_\w*\*", "", doc.read_text())  # space_dra_plugin_*: a family
    named = set(re.findall(r"\bspace_dra_[a-z_]*[a-z]", text))
    named = {re.sub(r"_(bucket|sum|count)$", "", name) for name in named}
    assert named - set(DEFINED) == set()


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_chart_values_exist(doc: Path) -> None:
    declared = declared_values()
    top = {path for path in declared if "." not in path}
    unknown = []
    for span in inline_code(doc.read_text()):
        for token in re.findall(r"[A-Za-z][\w.]*", span.split("=")[0].split(":")[0]):
            path = token.rstrip(".")
            if "." not in path or path.split(".")[0] not in top or FILE_NAME.search(path):
                continue
            parts = path.split(".")
            prefixes = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
            # Known, or inside a declared leaf (a map such as a securityContext).
            if path not in declared and not any(declared.get(p) for p in prefixes):
                unknown.append(path)
    assert unknown == []


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_space_dra_flags_exist(doc: Path) -> None:
    text = doc.read_text()
    shown = set()
    for span in inline_code(text):
        if span.startswith("--") or OUR_COMMAND.search(span):
            shown.update(re.findall(r"(--[a-z][a-z-]*)", span))
    for line in text.splitlines():
        if found := OUR_COMMAND.search(line):
            shown.update(re.findall(r"(--[a-z][a-z-]*)", line[found.end() :]))
    assert shown - cli_flags() - OTHER_TOOLS_FLAGS == set()


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_links_resolve(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert broken == []
