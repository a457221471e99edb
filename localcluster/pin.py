"""Make the Go modules under localcluster/ (and the test plugin) follow versions.py.

``python -m localcluster pin`` rewrites each module's requirements and replace block with
``go mod edit`` and then runs ``go mod tidy``; ``check()`` only compares (used by the unit test).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from localcluster import versions
from localcluster.layout import REPO_ROOT


def read_go_mod(module_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(requires, replaces) of a go.mod, parsed without the go tool: module -> version."""
    requires: dict[str, str] = {}
    replaces: dict[str, str] = {}
    block: str | None = None
    for raw in (module_dir / "go.mod").read_text().splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.endswith("(") and line.split()[0] in ("require", "replace"):
            block = line.split()[0]
            continue
        if line == ")":
            block = None
            continue
        kind = block
        words = line.split()
        if block is None:
            if words[0] not in ("require", "replace"):
                continue
            kind, words = words[0], words[1:]
        if kind == "require" and len(words) >= 2:
            requires[words[0]] = words[1]
        elif kind == "replace" and "=>" in words:
            i = words.index("=>")
            target = words[i + 1 :]
            replaces[words[0]] = target[1] if len(target) > 1 else target[0]
    return requires, replaces


def mismatches() -> list[str]:
    """Every disagreement between versions.py and the go.mod files."""
    problems: list[str] = []
    for rel, wanted in versions.go_module_requirements().items():
        module_dir = REPO_ROOT / rel
        if not (module_dir / "go.mod").exists():
            problems.append(f"{rel}/go.mod is missing")
            continue
        requires, replaces = read_go_mod(module_dir)
        for key, version in wanted.items():
            if key.startswith("replace:"):
                mod = key.removeprefix("replace:")
                if replaces.get(mod) != version:
                    problems.append(f"{rel}: replace {mod} is {replaces.get(mod)}, want {version}")
            elif requires.get(key) != version:
                problems.append(f"{rel}: require {key} is {requires.get(key)}, want {version}")
        extra = {
            m
            for m in replaces
            if m.startswith("k8s.io/") and f"replace:{m}" not in wanted and rel.endswith("k8sbuild")
        }
        problems += [f"{rel}: unexpected replace {m}" for m in sorted(extra)]
    return problems


def pin() -> None:
    """Rewrite the modules with ``go mod edit`` and tidy them."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    for rel, wanted in versions.go_module_requirements().items():
        module_dir = REPO_ROOT / rel
        edits = [f"-go={versions.GO_DIRECTIVE}", f"-godebug=default={versions.GODEBUG_DEFAULT}"]
        _requires, replaces = read_go_mod(module_dir)
        for key, version in wanted.items():
            if key.startswith("replace:"):
                mod = key.removeprefix("replace:")
                edits.append(f"-replace={mod}={mod}@{version}")
            else:
                edits.append(f"-require={key}@{version}")
        if rel.endswith("k8sbuild"):
            edits += [
                f"-dropreplace={m}"
                for m in replaces
                if m.startswith("k8s.io/") and f"replace:{m}" not in wanted
            ]
        for args in (["go", "mod", "edit", *edits], ["go", "mod", "tidy"]):
            res = subprocess.run(
                args, cwd=module_dir, env=env, capture_output=True, text=True, check=False
            )
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} in {rel} failed:\n{res.stderr}")
        print(json.dumps({"module": rel, "pinned": wanted}, indent=None))
