"""deployments/container/Dockerfile and the Docker-less builder make the same image layout.

No Docker engine runs here, so the Dockerfile cannot be built in the tests; instead it is parsed
and compared with ``localcluster.driverlayout`` (the facts ``localcluster.driverimage`` builds
from) and with the local builder's image config. No marker: this runs in well under a second.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

import pytest

from localcluster import driverimage
from localcluster import driverlayout as facts
from localcluster.layout import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deployments" / "container" / "Dockerfile"
DOCKERIGNORE = DOCKERFILE.with_name("Dockerfile.dockerignore")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it follows; -1 before the first FROM


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions: comment lines dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, " ".join(args.split()), stage))
    return out


def expand(text: str, args: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in args:
            raise KeyError(f"${name} is not an ARG with a default")
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, text)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def args(instructions: list[Instruction]) -> dict[str, str]:
    """The global ARG defaults (those before the first FROM)."""
    found = {}
    for ins in instructions:
        if ins.keyword == "ARG" and ins.stage == -1:
            name, sep, default = ins.args.partition("=")
            assert sep, f"ARG {name} has no default"
            found[name] = default
    return found


def stage(instructions: list[Instruction], index: int) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    wanted = last if index == -1 else index
    return [i for i in instructions if i.stage == wanted]


def test_args_are_the_driverlayout_facts(args: dict[str, str]) -> None:
    assert args == {
        "DEBIAN_SUITE": facts.DEBIAN_SUITE,
        "PYTHON_VERSION": facts.PYTHON_VERSION,
        "VENV": facts.VENV,
        "USER_ID": str(facts.USER_ID),
        "USER_NAME": facts.USER_NAME,
        "USER_HOME": facts.USER_HOME,
        "USER_SHELL": facts.USER_SHELL,
        "PIP_VERSION": facts.PIP_VERSION,
        "SETUPTOOLS_VERSION": facts.SETUPTOOLS_VERSION,
        "WHEEL_VERSION": facts.WHEEL_VERSION,
    }


def test_runtime_is_debian_python_with_the_same_packages(
    instructions: list[Instruction], args: dict[str, str]
) -> None:
    runtime = stage(instructions, 0)
    assert expand(runtime[0].args, args) == f"debian:{facts.DEBIAN_SUITE}-slim AS runtime"
    installs = [
        expand(i.args, args) for i in runtime if i.keyword == "RUN" and "apt-get install" in i.args
    ]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("apt-get install", 1)[1].split("&&", 1)[0])
    packages = {w for w in words if not w.startswith("-")}
    assert packages == set(facts.DEBIAN_PACKAGES)
    # The local builder asks apt for the same packages (plus /bin/sh and /etc/os-release, which
    # debian:*-slim has anyway) and resolves the dependencies of both.
    assert driverimage.ROOT_PACKAGES[: len(facts.DEBIAN_PACKAGES)] == facts.DEBIAN_PACKAGES
    assert f"python{facts.PYTHON_VERSION}" in facts.DEBIAN_PACKAGES
    # Every later stage builds on that runtime, the image included.
    froms = [expand(i.args, args) for i in instructions if i.keyword == "FROM"]
    assert froms[1:] == ["runtime AS builder", "runtime"]


def test_venv_is_made_by_debian_python_and_copied_whole(
    instructions: list[Instruction], args: dict[str, str]
) -> None:
    builder = [expand(i.args, args) for i in stage(instructions, 1) if i.keyword == "RUN"]
    venv_cmd = f"python{facts.PYTHON_VERSION} -m venv --without-pip {facts.VENV}"
    assert any(venv_cmd in run for run in builder)
    assert any(f"--python {facts.VENV}/bin/python install" in run for run in builder)
    # Bytecode as the local builder compiles it: unchecked hashes, tests left out.
    compile_cmd = f"{facts.VENV}/bin/python {shlex.join(driverimage.COMPILEALL)}"
    assert any(compile_cmd in run for run in builder), compile_cmd
    final = stage(instructions, -1)
    copies = [expand(i.args, args) for i in final if i.keyword == "COPY"]
    assert copies == [f"--from=builder {facts.VENV} {facts.VENV}"]


def test_image_env_cmd_and_user_match_the_local_image(
    instructions: list[Instruction], args: dict[str, str]
) -> None:
    final = stage(instructions, -1)
    env: dict[str, str] = {}
    for ins in final:
        if ins.keyword == "ENV":
            for word in shlex.split(expand(ins.args, args)):
                key, _, value = word.partition("=")
                env[key] = value
    local = driverimage.image_config("0.0.0")
    assert env == facts.ENV
    assert [f"{k}={v}" for k, v in env.items()] == list(local.env)
    assert env["PATH"].split(":")[0] == f"{facts.VENV}/bin"

    cmds = [json.loads(i.args) for i in final if i.keyword == "CMD"]
    assert cmds == [list(facts.CMD)] == [list(local.cmd)]
    assert not any(i.keyword in ("ENTRYPOINT", "USER") for i in final)
    assert not local.entrypoint
    assert local.user == ""  # root by default: the kubelet plugin needs it

    runs = " ".join(expand(i.args, args) for i in final if i.keyword == "RUN")
    assert f'echo "{facts.passwd_line()}" >> /etc/passwd' in runs
    assert f'echo "{facts.group_line()}" >> /etc/group' in runs
    assert f"chown {facts.USER_ID}:{facts.USER_ID} {facts.USER_HOME}" in runs


def dockerignore_includes(patterns: list[str], path: str) -> bool:
    """Whether the build context keeps ``path`` (Docker's rules: last matching pattern wins, a
    pattern matching a parent directory matches its contents, ``!`` re-includes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            included = negate
    return included


def test_build_context_is_what_both_builders_read(
    instructions: list[Instruction], args: dict[str, str]
) -> None:
    sources: set[str] = set()
    for ins in stage(instructions, 1):
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            sources.update(expand(ins.args, args).split()[:-1])
    local = {p.parts[0] for p in driverimage.project_files()} | {"constraints.txt"}
    assert sources == local

    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in [*sorted(sources), "src/space_dra/cli.py", "src/space_dra/proto/dra/v1/api_pb2.py"]:
        assert dockerignore_includes(patterns, path), path
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        ".cluster/kubeconfig",
        "tests/conftest.py",
        "src/space_dra/__pycache__/cli.cpython-311.pyc",
        "src/space_dra.egg-info/PKG-INFO",
    ]:
        assert not dockerignore_includes(patterns, path), path
