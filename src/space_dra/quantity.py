"""Kubernetes resource quantities ("500m", "2Gi", "1e3"), parsed exactly.

Only needed to compare a claim's quota request against the class policy, so this
parses to a Decimal and never formats: the original string is what gets applied.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# ASCII digits only: the API server knows no others.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SUFFIX = r"(?:Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]{1,3}|[numkMGTPE])"
_PATTERN = re.compile(
    rf"(?P<number>[+-]?{_NUMBER})"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?[0-9]{1,3})|(?P<decimal>[numkMGTPE]?))"
)
# The same strings, less those below zero ("-0" is zero), for checks that cannot compare
# values: admission CEL and the chart's JSON schema (RE2 syntax, whole-string match).
NON_NEGATIVE_QUANTITY_PATTERN = rf"(\+?{_NUMBER}|-(?:0+(?:\.0*)?|\.0+)){_SUFFIX}?"


def parse_quantity(text: str) -> Decimal:
    """Return the value of a quantity string; raise ValueError if it is not one."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError(f"not a quantity: {text!r}")
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    try:
        number = Decimal(match["number"])
        if match["binary"]:
            return number * _BINARY[match["binary"]]
        if match["exp"]:
            return number * (Decimal(10) ** int(match["exp"][1:]))
        return number * _DECIMAL[match["decimal"] or ""]
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {text!r}") from exc
