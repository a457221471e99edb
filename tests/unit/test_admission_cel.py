"""The admission policy's generated CEL, run by the API server's own admission code.

``tests/vapcheck`` (Go, k8s.io/apiserver at the cluster's version) compiles the policy's
variables and validations as the API server does when the chart installs it, and judges
objects as its admission plugin does. The first build takes minutes (cached after);
the test is skipped without a Go toolchain.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from space_dra import schema, schema_cel
from space_dra.config import SOURCE_CLAIM, SOURCE_CLASS, ConfigError, parse_document, resolve
from space_dra.contract import DEFAULT_DRIVER_NAME
from tests.support.claims import namespace_config as doc
from tests.support.gotools import REPO, build

Judge = Callable[[list[dict[str, Any]]], list[list[str]]]
pytestmark = pytest.mark.timeout(1500)


Run = Callable[[list[schema_cel.Validation], list[dict[str, Any]]], dict[str, Any]]


@pytest.fixture(scope="module")
def vapcheck() -> Run:
    if shutil.which("go") is None:
        pytest.skip("the Go toolchain is needed to build tests/vapcheck")
    binary = build(REPO / "tests" / "vapcheck", "vapcheck")

    def run(
        validations: list[schema_cel.Validation], objects: list[dict[str, Any]]
    ) -> dict[str, Any]:
        spec = {
            "variables": [asdict(v) for v in schema_cel.variables(DEFAULT_DRIVER_NAME)],
            "validations": [asdict(v) for v in validations],
            "objects": objects,
        }
        result = subprocess.run(
            [str(binary)], input=json.dumps(spec), capture_output=True, text=True, check=True
        )
        output: dict[str, Any] = json.loads(result.stdout)
        return output

    return run


@pytest.fixture(scope="module")
def admission(vapcheck: Run) -> Judge:
    """The chart's policy: the denial messages for each object."""

    def judge(objects: list[dict[str, Any]]) -> list[list[str]]:
        output = vapcheck(schema_cel.validations(DEFAULT_DRIVER_NAME), objects)
        assert output["compileErrors"] == []
        denied: list[list[str]] = [r["denied"] for r in output["results"]]
        return denied

    return judge


def test_the_checker_reports_what_the_api_server_would_refuse(vapcheck: Run) -> None:
    broken = schema_cel.Validation("variables.ours.all(p, p.role.matches('['))", "bad regex")
    untyped = schema_cel.Validation("variables.ours.size()", "not a bool")
    output = vapcheck([broken, untyped], [])
    assert len(output["compileErrors"]) == 2, output
    # An expression that fails at runtime denies the request (failurePolicy: Fail).
    failing = schema_cel.Validation("variables.ours.all(p, p.role == 1 / 0)", "never")
    [denied] = vapcheck([failing], [claim(doc(role="admin"))])["results"]
    assert denied["denied"] and "never" not in denied["denied"][0]


def _opaque(parameters: Any, driver: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    return {"opaque": {"driver": driver, "parameters": parameters}}


def claim(parameters: Any, driver: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    request = {"name": "ns", "exactly": {"deviceClassName": "space"}}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "team"},
        "spec": {"devices": {"requests": [request], "config": [_opaque(parameters, driver)]}},
    }


def claim_template(parameters: Any) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "t", "namespace": "team"},
        "spec": {"spec": claim(parameters)["spec"]},
    }


def device_class(parameters: Any) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "space"},
        "spec": {"config": [_opaque(parameters)]},
    }


def test_valid_configs_are_admitted(admission: Judge) -> None:
    everything = doc(
        **{item.name: item.example for item in schema.SETTINGS},
        policy={item.name: item.example for item in schema.POLICY},
    )
    defaults = doc(
        **{item.name: item.default for item in schema.SETTINGS if item.default is not None},
        policy={item.name: item.default for item in schema.POLICY if item.default is not None},
    )
    objects = [
        claim(doc()),
        claim(doc(**{k: v for k, v in everything.items() if k != "policy"})),
        claim_template(doc(role="view", quota={"pods": 10})),
        device_class(everything),
        device_class(defaults),
        # Configs for another driver are not ours to judge.
        claim({"anything": [1, 2]}, driver="gpu.example.com"),
        {**claim(doc()), "spec": {"devices": {"requests": []}}},
    ]
    assert admission(objects) == [[]] * len(objects)


@pytest.mark.parametrize(
    ("make", "parameters", "words"),
    [
        # What the e2e suite checks on the real API server.
        (claim, {"role": "admin", "colour": "blue"}, "unknown field"),
        (claim, {"podSecurity": "lax"}, "podSecurity must be one of"),
        (
            claim,
            {"policy": {"allowedRoles": ["cluster-admin"]}},
            "may only be set in a DeviceClass",
        ),
        (
            claim,
            {"tokenExpirationSeconds": 60},
            "tokenExpirationSeconds must be an integer from 600",
        ),
        (claim, {"mountPath": "/proc/self"}, "mountPath must be a normalized absolute path"),
        # Wrong types and shapes.
        (claim, {"role": 3}, "role must be the name of a ClusterRole"),
        (claim, {"role": "admin\n"}, "role must be"),
        (claim, {"tokenExpirationSeconds": "3600"}, "tokenExpirationSeconds must be an integer"),
        (claim, {"quota": {"pods": "-1"}}, "quota must be a map"),
        (claim, {"quota": ["pods"]}, "quota must be a map"),
        (claim, {"limitRange": {"maximum": {"cpu": "1"}}}, "limitRange must be a map of default"),
        (claim, {"generateName": "kube-x-"}, "generateName must be"),
        (claim, {"mountPath": "/etc/../root"}, "mountPath must be"),
        (claim_template, {"envPrefix": "1BAD"}, "envPrefix must be"),
        (device_class, {"policy": "admin"}, "policy must be an object"),
        (device_class, {"policy": {"surprise": 1}}, "policy must be an object with the fields"),
        (device_class, {"policy": {"allowedRoles": []}}, "policy.allowedRoles must be a non-empty"),
        (device_class, {"policy": {"allowNestedClaims": "yes"}}, "allowNestedClaims must be true"),
        (device_class, {"policy": {"allowAdminAccess": False}}, "policy must be an object with"),
        (claim, {"lifetimeSeconds": 5}, "lifetimeSeconds must be an integer from 10"),
        (claim, {"lifetimeSeconds": "20"}, "lifetimeSeconds must be an integer"),
        (device_class, {"policy": {"maxLifetimeSeconds": 0}}, "maxLifetimeSeconds must be"),
        (device_class, {"policy": {"maxQuota": {"pods": 1.5}}}, "policy.maxQuota must be"),
        (
            device_class,
            {"apiVersion": "v1", "kind": "ConfigMap"},
            f"opaque parameters for {DEFAULT_DRIVER_NAME} must have apiVersion",
        ),
    ],
)
def test_invalid_configs_are_refused_with_the_field_named(
    admission: Judge, make: Callable[[Any], dict[str, Any]], parameters: dict[str, Any], words: str
) -> None:
    [denied] = admission([make({**doc(), **parameters})])
    assert any(words in message for message in denied), denied


HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1.5, 600, 3600, 604800, 604801, "", "x", "admin", "Admin",
    "admin\n", "ci-", "kube-x", "a" * 59, "a" * 300, "restricted", "deny-all", "2Gi", "-1",
    "-0", "1e3", "\u0663", "/etc/x", "/etc/..data", "/etc/./x", "/etc", "/proc/x", "relative/x",
    "WORK_1", "$(id)", [], [""], ["admin"], ["ci-"], ["deny-all"], ["kube-"], ["none"] * 65,
    [1], {}, {"pods": "10"}, {"pods": 5}, {"pods": -1}, {"pods": "-0"}, {"pods": "10\n"},
    {"pods": 1.5}, {"pods": True}, {"Pods": "1"}, {"requests.cpu": "500m"},
    {"default": {"cpu": "1"}}, {"min": {"cpu": "2"}, "max": {"cpu": "1"}}, {"default": []},
    {"surprise": {}}, {f"r{i}": "1" for i in range(65)},
]  # fmt: skip


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    corpus: list[tuple[str, dict[str, Any]]] = []
    for item in schema.SETTINGS:
        corpus += [(SOURCE_CLAIM, doc(**{item.name: value})) for value in HOSTILE]
    for item in schema.POLICY:
        corpus += [(SOURCE_CLASS, doc(policy={item.name: value})) for value in HOSTILE]
    corpus += [(SOURCE_CLASS, doc(policy=value)) for value in HOSTILE]
    corpus += [(SOURCE_CLAIM, {**doc(), "surprise": 1}), (SOURCE_CLAIM, doc(policy={}))]
    return corpus


def test_admission_agrees_with_the_parser(admission: Judge) -> None:
    """Never stricter than the controller, and catches every structural error but one.

    The exception is the order of a LimitRange's values: comparing quantities is beyond
    a pattern, so only the controller refuses it.
    """
    corpus = _corpus()
    objects = [
        device_class(copy.deepcopy(d)) if source == SOURCE_CLASS else claim(copy.deepcopy(d))
        for source, d in corpus
    ]
    verdicts = admission(objects)
    assert len(verdicts) == len(corpus)
    admitted = refused = 0
    for (source, parameters), denied in zip(corpus, verdicts, strict=True):
        if denied:
            refused += 1
            with pytest.raises(ConfigError):
                resolve([(source, parameters)])
            continue
        admitted += 1
        try:
            parse_document(parameters, source)
        except ConfigError as exc:
            assert "min ≤ defaultRequest ≤ default ≤ max" in str(exc), (parameters, str(exc))
    # The corpus exercises both outcomes.
    assert admitted > 50
    assert refused > 500
