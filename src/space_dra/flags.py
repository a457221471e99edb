"""Flags that also read an environment variable, as both components declare them.

Every flag is shown in ``--help`` with its variable and default; the Helm chart
configures the pods through the variables. The value types here check their input
the same way whichever of the two it came from.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from space_dra.contract import DEFAULT_DRIVER_NAME


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(name, default)


def add_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    env: str,
    default: str | None,
    help_text: str,
    kind: Callable[[str], Any] = str,
    choices: Sequence[str] | None = None,
    shown: str | None = None,
) -> None:
    """``shown`` describes a default the code computes when the flag is left empty."""
    if shown is None:
        shown = "in-cluster" if default is None else (default or "none")
    parser.add_argument(
        flag,
        default=_env(env, default),
        type=kind,
        choices=choices,
        help=f"{help_text} [env {env}; default {shown}]",
    )


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def add_common(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "--driver-name", "DRIVER_NAME", DEFAULT_DRIVER_NAME, "DRA driver name")
    add_flag(
        parser, "--kubeconfig", "KUBECONFIG", None, "kubeconfig file; empty means in-cluster config"
    )
    add_flag(
        parser,
        "--log-format",
        "SPACE_DRA_LOG_FORMAT",
        "text",
        "log encoding",
        choices=("text", "json"),
    )
    add_flag(
        parser,
        "--log-level",
        "SPACE_DRA_LOG_LEVEL",
        "info",
        "log level",
        choices=("debug", "info", "warning", "error"),
    )
    add_flag(
        parser,
        "--policy-file",
        "SPACE_DRA_POLICY_FILE",
        "",
        "YAML file with the installation's policy (the chart's policy values); it applies to "
        "every claim whatever its DeviceClass, and a DeviceClass's policy can only narrow it",
        shown="the built-in policy",
    )
    add_flag(
        parser,
        "--http-address",
        "SPACE_DRA_HTTP_ADDRESS",
        "0.0.0.0",  # noqa: S104 - probes and scrapes come from other pods
        "address for /metrics, /healthz, /readyz",
    )
    add_flag(
        parser,
        "--http-port",
        "SPACE_DRA_HTTP_PORT",
        "8080",
        "port for /metrics, /healthz, /readyz",
        int,
    )
