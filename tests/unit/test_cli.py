"""The command line: --version, settings from the environment checked like flags, and
start-up failures reported as one log line in the chosen format with a non-zero exit.

Bad settings run the real command in a subprocess (its environment, stderr and exit
code are what a pod's container sees); the rest call ``main`` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from space_dra import __version__, cli

ENV_CASES = [
    ("controller", "SPACE_DRA_LOG_FORMAT", "yaml", "not one of text, json"),
    ("kubelet-plugin", "SPACE_DRA_LOG_LEVEL", "verbose", "not one of debug, info, warning, error"),
    ("controller", "SPACE_DRA_HTTP_PORT", "80a", "'80a' is not a valid int"),
    ("controller", "SPACE_DRA_BINDING_CONDITIONS", "maybe", "not one of auto, on, off"),
    ("controller", "SPACE_DRA_LEADER_ELECT", "perhaps", "expected true or false"),
    ("kubelet-plugin", "SPACE_DRA_TOKEN_REFRESH_FRACTION", "1.5", "between 0 and 1"),
    ("kubelet-plugin", "SPACE_DRA_WAIT_TIMEOUT", "soon", "'soon' is not a valid float"),
]


def run_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPACE_DRA_")}
    environment.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "space_dra", *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_flag_and_command_print_the_package_version() -> None:
    for args in (["--version"], ["version"]):
        result = run_command(*args)
        assert result.returncode == 0
        assert result.stdout == f"space-dra {__version__}\n"


@pytest.mark.parametrize(
    ("command", "variable", "value", "words"), ENV_CASES, ids=[case[1] for case in ENV_CASES]
)
def test_a_bad_environment_variable_is_refused_in_one_line_naming_it(
    command: str, variable: str, value: str, words: str
) -> None:
    result = run_command(command, **{variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "Traceback" not in line
    assert "event=start_failed" in line
    assert f"${variable}" in line
    assert words in line
    assert f'hint="space-dra {command} --help"' in line


def test_the_failure_is_logged_in_the_format_asked_for() -> None:
    result = run_command("controller", SPACE_DRA_LOG_FORMAT="json", SPACE_DRA_LOG_LEVEL="loud")
    [line] = result.stderr.splitlines()
    document = json.loads(line)
    assert document["level"] == "error"
    assert document["event"] == "start_failed"
    assert document["component"] == "space-dra controller"
    assert "$SPACE_DRA_LOG_LEVEL" in document["error"]
    # A format that is itself wrong falls back to text for its own error.
    result = run_command("controller", "--log-format=yaml", SPACE_DRA_LOG_FORMAT="json")
    [line] = result.stderr.splitlines()
    assert line.startswith("ts=")
    assert "--log-format" in line


def test_a_flag_overrides_a_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable is only a default: a valid flag wins and nothing is refused."""
    monkeypatch.setenv("SPACE_DRA_LOG_LEVEL", "verbose")
    args = cli.build_parser().parse_args(["controller", "--log-level=debug"])
    assert args.log_level == "debug"


def test_a_flag_value_is_checked_with_the_same_message() -> None:
    result = run_command("kubelet-plugin", "--log-level", "loud")
    assert result.returncode == 2
    assert "'loud' is not one of debug, info, warning, error" in result.stderr


def test_an_unusable_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = run_command("kubelet-plugin", f"--kubeconfig={missing}")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "Traceback" not in line
    assert "ClientConfigError" in line
    assert str(missing) in line


def test_a_refused_controller_option_is_one_line_and_exit_2() -> None:
    result = run_command("controller", "--plugin-service-account=nope", "--kubeconfig=/x")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert 'error="--plugin-service-account: ' in line
    assert "space-dra controller: " not in line.partition("error=")[2]


@pytest.mark.usefixtures("kept_logging")
def test_an_unexpected_failure_keeps_its_traceback_inside_one_json_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(_args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("space_dra.plugin.main.run", broken)
    assert cli.main(["kubelet-plugin", "--log-format=json"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    document = json.loads(line)
    assert document["event"] == "start_failed"
    assert "RuntimeError: a bug" in document["exception"]
    assert "Traceback" in document["exception"]


def test_help_shows_the_variable_of_each_flag() -> None:
    result = run_command("controller", "--help")
    assert result.returncode == 0
    assert "[env SPACE_DRA_LOG_FORMAT; default text]" in " ".join(result.stdout.split())
