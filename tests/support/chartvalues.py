"""Chart values the schema must refuse, and a helm binary to try them with.

Shared by the fast chart tests (tests/unit/test_chart_values.py, which skip without helm)
and the cluster suite (tests/cluster/test_chart_schema.py, where helm always exists).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localcluster.layout import Layout

# (helm arguments, what the message must contain: the key's path, then a word of the rule)
BAD_VALUES: list[tuple[list[str], str, str]] = [
    (["--set", "pool.size=-1"], "at '/pool/size'", "minimum"),
    (["--set-string", "pool.size=-1"], "at '/pool/size'", "pattern"),
    (["--set", "logFormat=yaml"], "at '/logFormat'", "'text', 'json'"),
    (["--set", "logLevel=verbose"], "at '/logLevel'", "'debug'"),
    (["--set", "surprise=1"], "additional properties 'surprise'", "not allowed"),
    (["--set", "controller.surprise=1"], "at '/controller'", "'surprise'"),
    (["--set", "defaults.colour=blue"], "at '/defaults'", "'colour'"),
    (["--set", "policy.surprise=true"], "at '/policy'", "'surprise'"),
    (["--set-string", "admissionPolicy.enabled=false"], "at '/admissionPolicy/enabled'", "boolean"),
    (["--set", "policy.minPodSecurity=lax"], "at '/policy/minPodSecurity'", "'baseline'"),
    (["--set-json", "policy.allowedRoles=[]"], "at '/policy/allowedRoles'", "minItems"),
    (["--set", "policy.maxQuota.pods=-5"], "at '/policy/maxQuota/pods'", "minimum"),
    (
        ["--set", "defaults.tokenExpirationSeconds=60"],
        "at '/defaults/tokenExpirationSeconds'",
        "600",
    ),
    (
        ["--set-string", "defaults.tokenExpirationSeconds=3600"],
        "at '/defaults/tokenExpirationSeconds'",
        "integer",
    ),
    (["--set", "defaults.mountPath=/proc/x"], "at '/defaults/mountPath'", "not"),
    (["--set", "defaults.generateName=kube-x-"], "at '/defaults/generateName'", "not"),
    (["--set", "controller.replicas=0"], "at '/controller/replicas'", "minimum"),
    (["--set", "kubeletPlugin.waitTimeout=60"], "at '/kubeletPlugin/waitTimeout'", "45"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'", "'IfNotPresent'"),
    (["--set", "pool.attributes.index=1"], "at '/pool/attributes/index'", "'not' failed"),
    (["--set", "policy.maxQuota.Pods=1"], "at '/policy/maxQuota'", "'Pods' not allowed"),
    (["--set", "pool.bindingConditions=maybe"], "at '/pool/bindingConditions'", "'auto'"),
    (["--set", "image.digest=sha256:abc"], "at '/image/digest'", "pattern"),
    (["--set", "nameOverride=Space_DRA"], "at '/nameOverride'", "pattern"),
    (["--set", "commonLabels.team=7"], "at '/commonLabels/team'", "string"),
    (
        ["--set", "controller.podSecurityContext.runAsUsr=1"],
        "at '/controller/podSecurityContext'",
        "'runAsUsr'",
    ),
    (
        ["--set-string", "kubeletPlugin.securityContext.privileged=yes"],
        "at '/kubeletPlugin/securityContext/privileged'",
        "boolean",
    ),
    (
        ["--set-string", "controller.podDisruptionBudget.minAvailable=half"],
        "at '/controller/podDisruptionBudget/minAvailable'",
        "pattern",
    ),
    (
        ["--set", "controller.serviceAccount.create=false"],
        "at '/controller/serviceAccount/name'",
        "minLength",
    ),
    (
        ["--set", "deviceClass.extendedResourceName=namespace"],
        "at '/deviceClass/extendedResourceName'",
        "pattern",
    ),
    (
        ["--set", "deviceClass.extendedResourceName=kubernetes.io/namespace"],
        "at '/deviceClass/extendedResourceName'",
        "'not' failed",
    ),
    (
        ["--set", "kubeletPlugin.health.failureThreshold=0"],
        "at '/kubeletPlugin/health/failureThreshold'",
        "minimum",
    ),
    (
        ["--set", "kubeletPlugin.health.checkInterval=0"],
        "at '/kubeletPlugin/health/checkInterval'",
        "exclusiveMinimum",
    ),
]

# Accepted, and what existing callers pass (numbers as strings come from --set-string).
GOOD_VALUES: dict[str, list[str]] = {
    "defaults": [],
    "tuned": [
        *("--set", "pool.size=300", "--set", "policy.maxQuota.pods=10"),
        *("--set", "defaults.quota.pods=5", "--set", "controller.replicas=2"),
        *("--set", "deviceClass.name=space-small", "--set-string", "podAnnotations.rollout=abc"),
    ],
    "strings-for-numbers": [
        *("--set-string", "pool.size=4", "--set-string", "controller.resyncPeriod=10"),
        *("--set-string", "kubeletPlugin.waitTimeout=2.5"),
        # What tests/e2e/test_health.py passes.
        *("--set-string", "kubeletPlugin.health.checkInterval=3"),
        *("--set-string", "kubeletPlugin.health.credentialCheckInterval=5"),
        *("--set-string", "kubeletPlugin.health.failureThreshold=2"),
    ],
    "no-admission-policy": [
        *("--set", "admissionPolicy.enabled=false", "--set", "deviceClass.create=false"),
    ],
    "extended-resource": [
        *("--set", "deviceClass.extendedResourceName=example.com/workspace"),
    ],
    "no-extended-resource": [
        *("--set", "deviceClass.extendedResourceName="),
    ],
    # A Role in each template namespace: they must exist (the cluster suite dry-runs these).
    "templates": [
        *("--set-json", 'policy.allowedTemplates=["default","kube-public"]'),
        *("--set-json", 'defaults.template="default"'),
    ],
    # Every convention a platform team may set (tests/unit/test_chart_conventions.py).
    "conventions": [
        *("--set", "fullnameOverride=dra", "--set", "nameOverride=spaces"),
        *("--set", "commonLabels.team=platform", "--set", "commonAnnotations.owner=ops"),
        *("--set", f"image.digest=sha256:{'0' * 64}", "--set", "imagePullSecrets[0].name=reg"),
        *("--set", "controller.serviceAccount.annotations.iam=role"),
        *("--set", "kubeletPlugin.serviceAccount.create=false"),
        *("--set", "kubeletPlugin.serviceAccount.name=node-sa"),
        *("--set", "controller.podDisruptionBudget.enabled=true"),
        *("--set", "controller.priorityClassName=system-cluster-critical"),
        *("--set-json", 'kubeletPlugin.nodeSelector={"dra": "yes"}'),
    ],
}


def find_helm() -> Path | None:
    """``$SPACE_DRA_HELM``, the local cluster's cached build, or helm on PATH."""
    candidates = [os.environ.get("SPACE_DRA_HELM", ""), str(Layout.default().helm_bin / "helm")]
    candidates.append(shutil.which("helm") or "")
    for candidate in filter(None, candidates):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None
