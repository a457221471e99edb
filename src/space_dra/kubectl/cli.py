"""``kubectl-space``: the command line, and the two commands wired from fetch to render.

kubectl runs this program for ``kubectl space ...`` (any executable named ``kubectl-<name>``
on PATH is a kubectl plugin). Flags work before or after the subcommand, as kubectl's do.
Every failure is one line on stderr, ``error: ...``, and a non-zero exit: 1 when the cluster or
the configuration is the problem, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn, TextIO

from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.kube import KubeError, LightkubeAPI
from space_dra.kubectl.detail import describe
from space_dra.kubectl.fetch import FetchError, Reader, fetch_claim, fetch_details, fetch_list
from space_dra.kubectl.kubeconfig import KubeconfigError, load_user_config
from space_dra.kubectl.model import is_ours, requested_classes, summaries
from space_dra.kubectl.structured import FORMATS, describe_document, dump, list_document
from space_dra.kubectl.table import describe_text, list_table

PROG = "kubectl space"
FIELD_MANAGER = "kubectl-space"  # never used to write: the tool only reads
# <release namespace>/<fullname>-policy for the chart installed as the README does.
DEFAULT_POLICY_CONFIG_MAP = "space-dra/space-dra-policy"
HELP_WIDTH = 90

DESCRIPTION = (
    "See the namespaces a DRA driver provisioned for your ResourceClaims: which namespace "
    "each claim got, whether it is ready, which pods use it, what policy and objects it "
    "got, its health and Events. Read-only; uses your kubeconfig and RBAC like kubectl."
)
LIST_DESCRIPTION = (
    "List the driver's ResourceClaims: those whose allocation holds devices of the driver, "
    "and those asking for its DeviceClass that are still pending. STATE is Pending, Ready, "
    "Failed: <reason>, Unhealthy: <reason>, Expiring at <time>, Expired at <time> or "
    "Deleting."
)
DESCRIBE_DESCRIPTION = (
    "Describe one of the driver's ResourceClaims: its state per device, the NamespaceConfig "
    "policy applied, the objects made in each namespace, the consuming pods, the device "
    "health they report, and the claim's Events. A part your RBAC does not let you read "
    "says so in its section."
)
EPILOG = """examples:
  kubectl space list                  claims in the current namespace
  kubectl space list -A               claims in every namespace
  kubectl space describe test-claim   one claim in detail
  kubectl space list -o yaml          the same rows as YAML"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """A fixed width, and ``-n, --namespace NS`` on every Python version, so the reference
    in docs/kubectl-space.md can quote ``--help`` verbatim."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=HELP_WIDTH, max_help_position=32)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Names like space-dra/space-dra-policy stay whole.
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {metavar}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _options() -> _Parser:
    """Flags accepted before and after the subcommand (SUPPRESS: unset ones do not clash)."""
    common = _Parser(add_help=False, formatter_class=_Formatter)
    default = argparse.SUPPRESS
    common.add_argument(
        "--kubeconfig",
        default=default,
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
    )
    common.add_argument(
        "--context",
        default=default,
        metavar="NAME",
        help="kubeconfig context (default: the current context)",
    )
    common.add_argument(
        "-n",
        "--namespace",
        default=default,
        metavar="NS",
        help="the claims' namespace (default: the context's namespace)",
    )
    common.add_argument(
        "--driver",
        default=default,
        metavar="NAME",
        help=f"DRA driver name (default: {DEFAULT_DRIVER_NAME})",
    )
    common.add_argument(
        "--device-class",
        default=default,
        metavar="NAME",
        help="the driver's DeviceClass, for claims not allocated yet (default: the driver name)",
    )
    common.add_argument(
        "-o",
        "--output",
        default=default,
        choices=("table", *FORMATS),
        metavar="FORMAT",
        help="table (default), json or yaml",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=textwrap.fill(DESCRIPTION, HELP_WIDTH),
        epilog=EPILOG,
        formatter_class=_Formatter,
        parents=[_options()],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="list the driver's claims",
        description=textwrap.fill(LIST_DESCRIPTION, HELP_WIDTH),
        formatter_class=_Formatter,
        parents=[_options()],
    )
    listing.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="claims in every namespace (CLAIM shows namespace/name)",
    )
    describing = commands.add_parser(
        "describe",
        help="describe one claim",
        description=textwrap.fill(DESCRIBE_DESCRIPTION, HELP_WIDTH),
        formatter_class=_Formatter,
        parents=[_options()],
    )
    describing.add_argument("claim", metavar="CLAIM", help="the ResourceClaim's name")
    describing.add_argument(
        "--policy-configmap",
        type=_config_map_ref,
        default=DEFAULT_POLICY_CONFIG_MAP,
        metavar="NS/NAME",
        help="the ConfigMap holding the installation's policy, which the controller applies to "
        "every claim (default: %(default)s, the chart's as the README installs it)",
    )
    return parser


def _config_map_ref(text: str) -> str:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {text!r}")
    return text


@dataclass(frozen=True)
class Options:
    driver: str
    device_class: str
    output: str
    policy_config_map: str = DEFAULT_POLICY_CONFIG_MAP


@dataclass(frozen=True)
class Result:
    stdout: str
    # One line each, for stderr: what could not be shown, or that nothing was found.
    notes: tuple[str, ...] = ()


async def run_list(api: Reader, options: Options, namespace: str | None, now: datetime) -> Result:
    """``namespace`` None lists every namespace."""
    snapshot = await fetch_list(api, options.driver, namespace)
    rows = summaries(
        snapshot.claims, options.driver, options.device_class, snapshot.namespaces.items
    )
    warnings = [e for e in [snapshot.namespaces.error] if e]
    notes = tuple(f"warning: {w}" for w in warnings)
    if options.output != "table":
        document = list_document(rows, options.driver, warnings)
        return Result(dump(document, options.output), notes)
    if not rows:
        where = f"namespace {namespace}" if namespace else "any namespace"
        return Result("", (*notes, f"No claims of {options.driver} found in {where}."))
    return Result(list_table(rows, now, all_namespaces=namespace is None), notes)


async def run_describe(
    api: Reader, options: Options, namespace: str, name: str, now: datetime
) -> Result:
    claim = await fetch_claim(api, namespace, name)
    if not is_ours(claim, options.driver, options.device_class):
        classes = ", ".join(sorted(requested_classes(claim))) or "none"
        raise FetchError(
            f"ResourceClaim {namespace}/{name} is not a claim of {options.driver} "
            f"(its requests name the DeviceClasses: {classes})"
        )
    policy_namespace, _, policy_name = options.policy_config_map.partition("/")
    snapshot = await fetch_details(api, options.driver, claim, (policy_namespace, policy_name))
    detail = describe(snapshot, options.driver)
    if options.output != "table":
        return Result(dump(describe_document(detail, options.driver), options.output))
    return Result(describe_text(detail, now))


async def run(args: argparse.Namespace) -> Result:
    user = load_user_config(getattr(args, "kubeconfig", None), getattr(args, "context", None))
    driver = getattr(args, "driver", DEFAULT_DRIVER_NAME)
    options = Options(
        driver=driver,
        device_class=getattr(args, "device_class", driver),
        output=getattr(args, "output", "table"),
        policy_config_map=getattr(args, "policy_configmap", DEFAULT_POLICY_CONFIG_MAP),
    )
    namespace = getattr(args, "namespace", user.namespace)
    api = LightkubeAPI(user.config, FIELD_MANAGER)
    try:
        now = datetime.now(UTC)
        if args.command == "list":
            return await run_list(api, options, None if args.all_namespaces else namespace, now)
        return await run_describe(api, options, namespace, args.claim, now)
    finally:
        await api.close()


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except (KubeconfigError, FetchError, KubeError) as exc:
        print(f"error: {one_line(exc)}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    out.write(result.stdout)
    for note in result.notes:
        print(note, file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
