"""kubectl space's command line: --help against the docs, the user's kubeconfig, errors.

``main`` is run in-process; the API server is the in-memory one (``LightkubeAPI`` replaced),
except where the test is that an unreachable server is reported in one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from space_dra.kube_memory import MemoryKube
from space_dra.kubectl import cli
from space_dra.kubectl.kubeconfig import KubeconfigError, load_user_config, merge
from tests.unit import kubectl_scene as scene

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "kubectl-space.md"
README = REPO / "README.md"


def help_text(*command: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        cli.build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("command", [(), ("list",), ("describe",)])
def test_the_reference_quotes_help_verbatim(command: tuple[str, ...]) -> None:
    marker = f"<!-- help: {' '.join(['kubectl space', *command, '--help'])} -->\n```text\n"
    doc = DOC.read_text()
    assert marker in doc, f"docs/kubectl-space.md lacks the block {marker!r}"
    quoted = doc.split(marker, 1)[1].split("```", 1)[0]
    assert quoted == help_text(*command)


def readme_section() -> str:
    text = README.read_text()
    return text.split("## See what you got\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_commands_parse_and_their_flags_are_in_help() -> None:
    commands = [
        line.split("#")[0].removeprefix("$ ").strip()
        for line in readme_section().splitlines()
        if line.startswith("$ kubectl space ")
    ]
    assert len(commands) == 2
    described = help_text("list") + help_text("describe")
    for command in commands:
        args = shlex.split(command)[2:]
        cli.build_parser().parse_args(args)
        for flag in (a for a in args if a.startswith("-")):
            assert re.search(rf"(^|[ ,]){re.escape(flag)}[ ,\n]", described), flag
    # The states the README names are the ones --help names.
    states = (
        "Pending, Ready, Failed: <reason>, Unhealthy: <reason>, Expiring at <time>, "
        "Expired at <time> or Deleting"
    )
    assert states in " ".join(readme_section().replace("`", "").split())
    assert states in " ".join(help_text("list").split())


def test_the_readme_list_example_is_the_tables_output() -> None:
    """The rows shown are those the scene's team-a claims render to with -A."""
    section = readme_section()
    shown = section.split("$ kubectl space list -A", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    golden = (REPO / "tests/unit/golden/kubectl_space/list-all.txt").read_text().splitlines()
    header = re.split(r"\s{3,}", shown[0])
    assert header == re.split(r"\s{3,}", golden[0])
    rows = {tuple(re.split(r"\s{3,}", line)) for line in golden[1:]}
    assert all(tuple(re.split(r"\s{3,}", line)) in rows for line in shown[1:])


# --- kubeconfig ------------------------------------------------------------------------------
def kubeconfig(path: Path, current: str | None, *contexts: tuple[str, str | None]) -> Path:
    """A kubeconfig with one cluster (``server``) and the given (context, namespace) pairs."""
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": f"c-{path.stem}", "cluster": {"server": f"https://{path.stem}.invalid"}}
        ],
        "users": [{"name": f"u-{path.stem}", "user": {"token": "t", "tokenFile": "token"}}],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": f"c-{path.stem}",
                    "user": f"u-{path.stem}",
                    **({"namespace": ns} if ns else {}),
                },
            }
            for name, ns in contexts
        ],
    }
    if current:
        document["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def test_context_and_its_namespace_are_the_defaults(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "one", "dev", ("dev", "team-a"), ("ops", None))
    user = load_user_config(str(path), None, env={})
    assert (user.context, user.namespace) == ("dev", "team-a")
    user = load_user_config(str(path), "ops", env={})
    assert (user.context, user.namespace) == ("ops", "default")
    with pytest.raises(KubeconfigError, match='context "nope" not found'):
        load_user_config(str(path), "nope", env={})


def test_kubeconfig_list_merges_first_wins_and_skips_missing_files(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a" / "first", None, ("shared", "from-first"))
    second = kubeconfig(tmp_path / "b" / "second", "shared", ("shared", "x"), ("own", "mine"))
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{first}:{second}"}
    user = load_user_config(None, None, env=env)
    # current-context from the second file (the first sets none), the context from the first.
    assert (user.context, user.namespace) == ("shared", "from-first")
    config = user.config.get()
    assert config is not None and config.cluster.server == "https://first.invalid"
    assert load_user_config(None, "own", env=env).namespace == "mine"
    # A relative path is relative to its own file, not the first one.
    users = user.config.users
    assert users["u-second"].token_file == str(tmp_path / "b" / "token")


def test_merge_of_nothing_has_no_current_context() -> None:
    assert merge([{}]) == {"clusters": [], "contexts": [], "users": [], "current-context": None}


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        ("/nonexistent/config", {}, "kubeconfig /nonexistent/config not found"),
        (None, {"KUBECONFIG": "/nonexistent/a:/nonexistent/b"}, "none of the files in KUBECONFIG"),
        (None, {"HOME": "/nonexistent"}, "no kubeconfig: pass --kubeconfig"),
    ],
)
def test_no_usable_kubeconfig_is_one_clear_line(
    flag: str | None, env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(KubeconfigError, match=re.escape(message)):
        load_user_config(flag, None, env=env)


def test_a_kubeconfig_without_current_context_asks_for_one(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "none", None, ("dev", None))
    with pytest.raises(KubeconfigError, match="no current context: pass --context"):
        load_user_config(str(path), None, env={})
    (tmp_path / "broken").write_text("clusters: [\n")
    with pytest.raises(KubeconfigError, match=r"^cannot read kubeconfig .*broken"):
        load_user_config(str(tmp_path / "broken"), None, env={})


# --- main ------------------------------------------------------------------------------------
class ScenePlayer:
    """Stands in for LightkubeAPI: the scene's API server, closed like the real one."""

    kube: MemoryKube
    closed: bool

    def __init__(self, config: Any, field_manager: str) -> None:
        self.kube, self.closed = scene.build(), False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    async def close(self) -> None:
        type(self).closed = True


def run_main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def player(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cli, "LightkubeAPI", ScenePlayer)
    ScenePlayer.closed = False
    return kubeconfig(tmp_path / "cfg", "dev", ("dev", "team-b"))


def test_main_lists_the_contexts_namespace_by_default(player: Path) -> None:
    code, out, err = run_main("list", "--kubeconfig", str(player), "-o", "json")
    assert (code, err) == (0, "")
    assert {i["namespace"] for i in json.loads(out)["items"]} == {"team-b"}
    assert ScenePlayer.closed


def test_main_takes_flags_before_and_after_the_command(player: Path) -> None:
    before = run_main("--kubeconfig", str(player), "-n", "team-a", "-o", "yaml", "list")
    after = run_main("list", "-o", "yaml", "-n", "team-a", "--kubeconfig", str(player))
    assert before == after and before[0] == 0
    names = [i["name"] for i in yaml.safe_load(before[1])["items"]]
    assert names == ["bad-role", "expiring", "ready", "waiting"]
    code, out, _ = run_main("--kubeconfig", str(player), "list", "-A")
    assert code == 0 and out.splitlines()[0].split() == [
        "CLAIM",
        "NAMESPACE",
        "STATE",
        "PODS",
        "AGE",
    ]
    assert len(out.splitlines()) == 9


def test_main_describes_and_fails_in_one_line(player: Path) -> None:
    code, out, err = run_main("describe", "ready", "-n", "team-a", "--kubeconfig", str(player))
    assert code == 0 and out.startswith("Name:       ready\n") and err == ""
    code, out, err = run_main("describe", "gone", "--kubeconfig", str(player))
    assert (code, out) == (1, "")
    assert err == 'error: ResourceClaim "gone" not found in namespace team-b\n'
    code, out, err = run_main("--kubeconfig", str(player), "--driver", "gpu.example.com", "list")
    assert (code, out) == (0, "")
    assert err == "No claims of gpu.example.com found in namespace team-b.\n"


def test_wrong_command_lines_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["list", "--bogus"], ["describe"], ["list", "-o", "wide"]):
        with pytest.raises(SystemExit) as done:
            cli.main(args)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code, out, err = run_main("list", "--kubeconfig", str(path))
    assert (code, out) == (1, "")
    assert err.startswith("error: cannot list ResourceClaims in namespace default: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("value", ["space-dra", "/x", "x/", "a/b/c"])
def test_the_policy_configmap_is_namespace_slash_name(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["describe", "x", "--policy-configmap", value])
    assert "expected NAMESPACE/NAME" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["describe", "x", "--policy-configmap", "ns/cm"])
    assert args.policy_configmap == "ns/cm"
