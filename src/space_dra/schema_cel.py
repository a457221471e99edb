"""The admission policy's structural checks, as CEL, derived from :mod:`space_dra.schema`.

The chart's ValidatingAdmissionPolicy refuses a NamespaceConfig with an unknown field or
a value of the wrong shape before the object is stored, so a user sees the mistake at
``kubectl apply`` instead of in a ``NamespaceFailed`` condition later. It checks what
can be judged from one document alone (types, patterns, enums, absolute bounds); what
depends on the policy (allowed roles, quota caps) is left to the controller, which sees
the DeviceClass and the claim together. Never stricter than the parser: anything
admission refuses, :func:`space_dra.config.resolve` refuses too.

Written as Helm named templates (``templates/_namespaceconfig.tpl``) that
``admissionpolicy.yaml`` includes: the variables that find our opaque parameters in a
DeviceClass, claim or claim template (``variables.ours``), and the validations.
``tests/vapcheck`` runs them with the API server's CEL library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, assert_never

from space_dra import schema
from space_dra.contract import CONFIG_API_VERSION, CONFIG_KIND
from space_dra.schema_json import GENERATED_BY, reserved_roots_pattern
from space_dra.schema_parse import rule

VARIABLES_TEMPLATE: Final = "space-dra.namespaceConfigVariables"
VALIDATIONS_TEMPLATE: Final = "space-dra.namespaceConfigValidations"
# In the chart the driver name is a value; tests substitute a literal.
_HELM_DRIVER: Final = "{{ .Values.driverName }}"
_HELM_DRIVER_LITERAL: Final = "{{ .Values.driverName | quote }}"


@dataclass(frozen=True)
class Variable:
    name: str
    expression: str


@dataclass(frozen=True)
class Validation:
    expression: str
    message: str
    reason: str = "Invalid"


def literal(text: str) -> str:
    """A CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(literal(item) for item in items) + "]"


def _matches(value: str, pattern: str) -> str:
    return f"{value}.matches({literal(pattern)})"


def _string(value: str, pattern: str, max_length: int) -> str:
    return (
        f"type({value}) == string && size({value}) >= 1 && size({value}) <= {max_length} "
        f"&& {_matches(value, f'^{pattern}$')}"
    )


def predicate(kind: schema.Kind, value: str, depth: int = 0) -> str:
    """A CEL expression true when ``value`` (a CEL expression) is of ``kind``."""
    var = f"k{depth}"  # macro variables must not shadow the enclosing one
    match kind:
        case schema.Text():
            return _string(value, kind.pattern, kind.max_length)
        case schema.NamePrefix():
            reserved = " && ".join(
                f"!{value}.startsWith({literal(prefix)})" for prefix in kind.reserved_prefixes
            )
            return f"{_string(value, kind.pattern, kind.max_length)} && {reserved}"
        case schema.MountPath():
            return (
                f"type({value}) == string && size({value}) <= {kind.max_length} "
                f"&& {_matches(value, f'^{kind.pattern}$')} "
                f"&& !{_matches(value, kind.dot_segment)} "
                f"&& !{_matches(value, reserved_roots_pattern(kind))}"
            )
        case schema.Choice():
            return f"type({value}) == string && {value} in {_list(kind.options)}"
        case schema.Integer():
            return f"type({value}) == int && {value} >= {kind.minimum} && {value} <= {kind.maximum}"
        case schema.Boolean():
            return f"type({value}) == bool"
        case schema.Quantities():
            item = f"{value}[{var}]"
            quantity = (
                f"(type({item}) == int ? {item} >= 0 : type({item}) == string "
                f"&& size({item}) <= {kind.quantity_max_length} "
                f"&& {_matches(item, f'^{kind.quantity_pattern}$')})"
            )
            return (
                f"type({value}) == map && size({value}) <= {kind.max_entries} "
                f"&& {value}.all({var}, size({var}) <= {kind.name_max_length} "
                f"&& {_matches(var, f'^{kind.name_pattern}$')} && {quantity})"
            )
        case schema.LimitRange():
            inner = predicate(kind.resources, f"{value}[{var}]", depth + 1)
            return (
                f"type({value}) == map "
                f"&& {value}.all({var}, {var} in {_list(kind.kinds)} && {inner})"
            )
        case schema.ListOf():
            inner = predicate(kind.item, var, depth + 1)
            at_least = f" && size({value}) >= {kind.min_items}" if kind.min_items else ""
            return (
                f"type({value}) == list{at_least} && size({value}) <= {kind.max_items} "
                f"&& {value}.all({var}, {inner})"
            )
        case _:
            assert_never(kind)


def variables(driver: str | None = None) -> list[Variable]:
    """``configs``: the object's device configs; ``ours``: the parameters for ``driver``."""
    name = _HELM_DRIVER_LITERAL if driver is None else json.dumps(driver)
    configs = (
        "object.kind == 'DeviceClass' "
        "? (has(object.spec.config) ? object.spec.config : []) "
        ": object.kind == 'ResourceClaim' "
        "? (has(object.spec.devices) && has(object.spec.devices.config) "
        "? object.spec.devices.config : []) "
        ": (has(object.spec.spec.devices) && has(object.spec.spec.devices.config) "
        "? object.spec.spec.devices.config : [])"
    )
    ours = (
        f"variables.configs.filter(c, has(c.opaque) && c.opaque.driver == {name})"
        ".map(c, c.opaque.parameters)"
    )
    return [Variable("configs", configs), Variable("ours", ours)]


def validations(driver: str | None = None) -> list[Validation]:
    """The checks, in order; ``driver`` None: the chart's value (a Helm expression)."""
    settings = tuple(item.name for item in schema.SETTINGS)
    policy = tuple(item.name for item in schema.POLICY)
    result = [
        Validation(
            f"variables.ours.all(p, has(p.apiVersion) && p.apiVersion == "
            f"{literal(CONFIG_API_VERSION)} && has(p.kind) && p.kind == {literal(CONFIG_KIND)})",
            f"opaque parameters for {driver or _HELM_DRIVER} must have apiVersion: "
            f"{CONFIG_API_VERSION} and kind: {CONFIG_KIND}",
        ),
        Validation(
            "variables.ours.all(p, p.all(k, k in "
            f"{_list(('apiVersion', 'kind', *settings, schema.POLICY_FIELD))}))",
            f"NamespaceConfig has an unknown field; allowed: {', '.join(settings)} "
            "(and policy in a DeviceClass)",
        ),
        Validation(
            "object.kind == 'DeviceClass' || variables.ours.all(p, !has(p.policy))",
            "NamespaceConfig.policy may only be set in a DeviceClass; remove it from the claim",
            "Forbidden",
        ),
    ]
    for item in schema.SETTINGS:
        result.append(
            Validation(
                f"variables.ours.all(p, !has(p.{item.name}) || "
                f"({predicate(item.kind, f'p.{item.name}')}))",
                f"NamespaceConfig.{item.name} must be {rule(item.kind)}",
            )
        )
    result.append(
        Validation(
            "variables.ours.all(p, !has(p.policy) || "
            f"(type(p.policy) == map && p.policy.all(k, k in {_list(policy)})))",
            f"NamespaceConfig.policy must be an object with the fields {', '.join(policy)}",
        )
    )
    for item in schema.POLICY:
        value = f"p.policy.{item.name}"
        result.append(
            Validation(
                "variables.ours.all(p, !has(p.policy) || type(p.policy) != map || "
                f"!has({value}) || ({predicate(item.kind, value)}))",
                f"NamespaceConfig.policy.{item.name} must be {rule(item.kind)}",
            )
        )
    return result


def template_text() -> str:
    lines = [
        f"{{{{/* Generated by {GENERATED_BY}; edit those and run `make schema`. */}}}}",
        f'{{{{- define "{VARIABLES_TEMPLATE}" -}}}}',
    ]
    for variable in variables():
        lines += [f"- name: {variable.name}", "  expression: >-", f"    {variable.expression}"]
    lines += ["{{- end }}", "", f'{{{{- define "{VALIDATIONS_TEMPLATE}" -}}}}']
    for check in validations():
        lines += [
            "- expression: >-",
            f"    {check.expression}",
            f"  message: {json.dumps(check.message, ensure_ascii=False)}",
            f"  reason: {check.reason}",
        ]
    lines.append("{{- end }}")
    return "\n".join(lines) + "\n"
