"""Flags that also read an environment variable, as both components declare them.

Every flag is shown in ``--help`` with its variable and default; the Helm chart
configures the pods through the variables, so a value there must be refused as
clearly as the same value on the command line. argparse converts a default taken from
the environment with the flag's ``type`` but never checks it against ``choices``; here
every flag gets one converter that does both and names the flag and the variable.
Parse errors raise :class:`UsageError` instead of printing and exiting, so the caller
can report them as a log line in the format asked for.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from space_dra import logs
from space_dra.contract import DEFAULT_DRIVER_NAME


class UsageError(Exception):
    """A flag or environment variable has a value the command cannot use."""

    def __init__(self, prog: str, message: str) -> None:
        self.prog = prog
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and subcommand parsers) raising UsageError on bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _checked(
    kind: Callable[[str], Any], choices: Sequence[str] | None, flag: str, env: str
) -> Callable[[str], Any]:
    source = f"(from {flag} or ${env})"

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc} {source}") from None
        except (TypeError, ValueError):
            what = getattr(kind, "__name__", "value")
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {what} {source}") from None
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of {', '.join(choices)} {source}"
            )
        return value

    return convert


def given_value(argv: Sequence[str], flag: str, env: str) -> str | None:
    """What ``flag`` (last on the command line) or else ``$env`` says, unparsed: for
    settings needed to report a failure to parse the rest."""
    value = os.environ.get(env)
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.partition("=")[2]
    return value


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
        default=os.environ.get(env, default),
        type=_checked(kind, choices, flag, env),
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


def add_client(parser: argparse.ArgumentParser, without_kubeconfig: str = "in-cluster") -> None:
    """What every command needs: which driver, which cluster, how to log.
    ``without_kubeconfig``: what the command uses when no kubeconfig is given."""
    add_flag(parser, "--driver-name", "DRIVER_NAME", DEFAULT_DRIVER_NAME, "DRA driver name")
    add_flag(
        parser,
        "--kubeconfig",
        "KUBECONFIG",
        None,
        "kubeconfig file",
        shown=without_kubeconfig,
    )
    add_flag(
        parser,
        "--log-format",
        "SPACE_DRA_LOG_FORMAT",
        "text",
        "log encoding",
        choices=logs.FORMATS,
    )
    add_flag(
        parser,
        "--log-level",
        "SPACE_DRA_LOG_LEVEL",
        "info",
        "log level",
        choices=logs.LEVELS,
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    """What both components take: add_client's, the policy and the HTTP endpoint."""
    add_client(parser)
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


def add_cleanup(parser: argparse.ArgumentParser) -> None:
    """``space-dra cleanup``: which installation's namespaces, and whether to delete."""
    # Run by an administrator from a workstation, as kubectl is (controller/cleanup.py).
    add_client(parser, without_kubeconfig="~/.kube/config, else in-cluster")
    add_flag(
        parser,
        "--namespace",
        "POD_NAMESPACE",
        "space-dra",
        "the driver's namespace (the release namespace), where its ownership key Secret is",
    )
    add_flag(
        parser,
        "--ownership-secret",
        "SPACE_DRA_OWNERSHIP_SECRET",
        "space-dra-ownership",
        "Secret in --namespace holding the key the namespaces were signed with "
        "(<fullname>-ownership, or the chart's ownershipKey.existingSecret)",
    )
    add_flag(
        parser,
        "--protected-namespaces",
        "SPACE_DRA_PROTECTED_NAMESPACES",
        "",
        "comma-separated namespaces never deleted, besides default, kube-system, kube-public, "
        "kube-node-lease and --namespace",
    )
    parser.add_argument(
        "--delete",
        action="store_true",
        help="delete the namespaces listed as 'would delete' (without it: a dry run)",
    )
