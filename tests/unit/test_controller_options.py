"""The controller's flags become one checked ControllerOptions, or a clear error."""

from __future__ import annotations

import pytest

from space_dra.cli import build_parser
from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.controller.main import run
from space_dra.controller.options import ControllerOptions, OptionsError, parse_attributes


def options(*flags: str) -> ControllerOptions:
    args = build_parser().parse_args(["controller", *flags])
    return ControllerOptions.from_args(args, hostname="host-1")


def test_defaults_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("POD_NAMESPACE", "POD_NAME", "SPACE_DRA_PROTECTED_NAMESPACES", "KUBECONFIG"):
        monkeypatch.delenv(env, raising=False)
    parsed = options()
    assert parsed.driver == DEFAULT_DRIVER_NAME
    assert parsed.identity == "host-1", "the hostname when --identity is empty"
    assert parsed.device_attributes == {"profile": "standard"}
    assert parsed.protected == {"space-dra"}, "the controller's own namespace"
    assert parsed.pod_api_server is None
    assert parsed.kubeconfig is None
    assert parsed.leader_elect is True


def test_flags_are_carried_over() -> None:
    parsed = options(
        "--namespace=ops",
        "--identity=me",
        "--protected-namespaces= platform, ,shared ",
        "--device-attributes=profile=big,tier=2,fast=true,example.com/zone=eu",
        "--pod-api-server-url=https://api.example.com:6443",
        "--workers=3",
        "--resync-period=12.5",
        "--pool-size=0",
        "--leader-elect=false",
    )
    assert parsed.protected == {"ops", "platform", "shared"}
    assert parsed.device_attributes == {
        "profile": "big",
        "tier": 2,
        "fast": True,
        "example.com/zone": "eu",
    }
    assert (parsed.identity, parsed.pod_api_server) == ("me", "https://api.example.com:6443")
    assert (parsed.workers, parsed.resync_seconds, parsed.pool_size) == (3, 12.5, 0)
    assert parsed.leader_elect is False


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--plugin-service-account=just-a-name", "must be <namespace>/<name>"),
        ("--plugin-service-account=/name", "must be <namespace>/<name>"),
        ("--plugin-service-account=ns/", "not a ServiceAccount name"),
        ("--plugin-service-account=ns/Bad_Name", "not a ServiceAccount name"),
        ("--device-attributes=profile", "expected name=value"),
        ("--device-attributes=index=3", "not 'index'"),
        ("--device-attributes=9lives=x", "C-identifier"),
        ("--pod-api-server-url=http://api:80", "not an https:// URL"),
        ("--workers=0", "--workers: must be 1 or more"),
        ("--resync-period=0", "--resync-period: must be above 0"),
        ("--pool-size=-1", "--pool-size: must be 0 or more"),
        ("--namespace=Space", "--namespace"),
        ("--driver-name=not a name", "--driver-name"),
        ("--protected-namespaces=ok,NOT_OK", "'NOT_OK' is not a namespace name"),
        ("--lease-name=-lease", "--lease-name"),
        ("--owner-device-class=Bad", "--owner-device-class"),
    ],
)
def test_bad_values_name_the_flag(flag: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message) as refused:
        options(flag)
    assert str(refused.value).startswith("--"), "the message starts with the flag"


def test_integers_and_booleans_in_attributes_are_typed() -> None:
    assert parse_attributes("a=-7,b=false,c=007x,d=") == {"a": -7, "b": False, "c": "007x", "d": ""}


async def test_run_stops_before_connecting_on_a_bad_flag() -> None:
    args = build_parser().parse_args(
        ["controller", "--plugin-service-account=nope", "--kubeconfig=/nonexistent"]
    )
    with pytest.raises(SystemExit, match="space-dra controller: --plugin-service-account"):
        await run(args)
