"""A deny-all namespace may query the cluster's DNS servers, and no other port-53 peer."""

from __future__ import annotations

from typing import Any

import pytest

from space_dra.controller.manifests import DnsServers, network_policy
from space_dra.controller.options import OptionsError, parse_cidrs, parse_labels


def egress_to_dns(dns: DnsServers) -> list[dict[str, Any]]:
    policy = network_policy("ns", "deny-all", {}, dns).to_dict()
    rules = policy["spec"]["egress"]
    return [rule for rule in rules if rule.get("ports")]


def test_dns_egress_names_its_servers_instead_of_any_address() -> None:
    [rule] = egress_to_dns(DnsServers(cidrs=("10.89.0.1/32",)))
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        },
        {"ipBlock": {"cidr": "10.89.0.1/32"}},
    ]
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}


def test_no_dns_server_named_means_no_dns_at_all() -> None:
    assert egress_to_dns(DnsServers(namespace_selector={}, pod_selector={})) == []


def test_deny_ingress_has_no_egress_rules() -> None:
    policy = network_policy("ns", "deny-ingress", {}, DnsServers()).to_dict()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in policy["spec"]


def test_selector_and_cidr_flags_are_checked() -> None:
    assert parse_labels("--f", "k8s-app=kube-dns, a.b/c=d") == {"k8s-app": "kube-dns", "a.b/c": "d"}
    assert parse_cidrs("10.0.0.1/32,fd00::/8") == ("10.0.0.1/32", "fd00::/8")
    with pytest.raises(OptionsError, match="--dns-pod-selector"):
        parse_labels("--dns-pod-selector", "no-equals")
    with pytest.raises(OptionsError, match="--dns-cidrs"):
        parse_cidrs("10.0.0.300/8")
