"""The Helm chart's values, declared once: name, type, default and doc of each.

``policy`` and ``defaults`` are the DeviceClass's NamespaceConfig, so their fields come
from :mod:`space_dra.schema`; everything else is the chart's own and is declared here.
``tools/genschema.py`` writes ``values.yaml`` (defaults and comments) and
``values.schema.json`` (so ``helm lint --strict``/``install`` refuse a wrong value,
naming it) from this tree, and the values table of ``docs/configuration.md``.
A new chart value goes here first; ``make schema`` then regenerates the chart files.

Types are JSON-schema fragments (or a schema kind, for the NamespaceConfig sections).
Numbers the templates quote into environment variables also accept digit strings, so
``--set-string pool.size=4`` keeps working; numbers in ``policy``/``defaults`` go into
the DeviceClass as they are and must be real numbers.
"""

from __future__ import annotations

from typing import Any, Final

from space_dra import schema
from space_dra.contract import DEFAULT_DRIVER_NAME
from space_dra.schema_deploy import (
    CONTROLLER_SECURITY,
    DISRUPTION_BUDGET,
    METRICS,
    NAMING,
    PLUGIN_SECURITY,
    service_account,
)
from space_dra.schema_types import (
    AFFINITY,
    ATTRIBUTES,
    BINDING_CONDITIONS,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    IMAGE_DIGEST,
    LOG_FORMATS,
    LOG_LEVELS,
    PULL_POLICIES,
    RESOURCES,
    TOLERATIONS,
    Group,
    Json,
    Value,
    array,
    boolean,
    choice,
    closed,
    extended_resource_name,
    integer,
    path,
    port,
    seconds,
    string_map,
    text,
)


def _scheduling(
    component: str, resources: Json, tolerations: Any, priority_class: str
) -> tuple[Value, ...]:
    return (
        Value("resources", RESOURCES, resources, f"The {component}'s container resources."),
        Value("nodeSelector", string_map(), {}, f"Where the {component} may run."),
        Value("tolerations", TOLERATIONS, tolerations, f"Taints the {component} tolerates."),
        Value(
            "priorityClassName",
            text(DNS_SUBDOMAIN, empty=True),
            priority_class,
            f"PriorityClass of the {component}'s pods.",
        ),
        Value("affinity", AFFINITY, {}, f"The {component}'s pod affinity."),
    )


def _namespace_config(fields: tuple[schema.Field, ...]) -> tuple[Value, ...]:
    return tuple(Value(item.name, item.kind, item.default, item.doc) for item in fields)


_TOKEN_DEFAULT: Final = schema.field_named(schema.SETTINGS, "tokenExpirationSeconds").default

VALUES: Final = Group(
    "",
    (
        Value(
            "driverName",
            text(DNS_SUBDOMAIN, max_length=63),
            DEFAULT_DRIVER_NAME,
            "The DRA driver name; also the prefix of every label and annotation the driver sets.",
        ),
        *NAMING,
        Group(
            "image",
            (
                Value(
                    "repository",
                    text(max_length=255),
                    "localhost/space-dra/driver",
                    "Image name without the tag.",
                ),
                Value(
                    "tag",
                    text(empty=True, max_length=128),
                    "",
                    "Defaults to the chart's appVersion.",
                ),
                Value(
                    "digest",
                    IMAGE_DIGEST,
                    "",
                    "sha256:<hex>; when set, the image is pulled by digest and the tag is ignored.",
                ),
                Value(
                    "pullPolicy", choice(PULL_POLICIES), "IfNotPresent", "The pods' pull policy."
                ),
            ),
            "The driver image; both components run it.",
        ),
        Value(
            "imagePullSecrets",
            array(closed({"name": text()}, required=("name",))),
            [],
            "Secrets for pulling the image, as in a pod spec: [{name: my-secret}].",
        ),
        Value(
            "podAnnotations",
            string_map(),
            {},
            "Added to both components' pods (e.g. a checksum that forces a rollout).",
        ),
        Group(
            "deviceClass",
            (
                Value("create", boolean(), True, "Create the DeviceClass with this chart."),
                Value("name", text(DNS_SUBDOMAIN, empty=True), "", "Defaults to driverName."),
                Value(
                    "extendedResourceName",
                    extended_resource_name(),
                    "auto",
                    "The extended resource a pod asks for in `resources.limits` to get a "
                    "namespace of this class without a claim of its own (the scheduler "
                    "generates one; env `SPACE_*`, mount `/etc/space`). `auto`: "
                    "`<driverName>/namespace` on Kubernetes 1.36 or newer "
                    "(DRAExtendedResource: beta in 1.36, GA in 1.37), none before; empty: none; "
                    "another name: that one (an API server without the feature drops it). "
                    "`helm template` needs `--kube-version` for `auto`.",
                ),
            ),
            "The DeviceClass users reference in their ResourceClaims. It carries the admin "
            "policy and defaults below as an opaque NamespaceConfig.",
        ),
        Group(
            "pool",
            (
                Value(
                    "size",
                    integer(0),
                    32,
                    "How many ephemeral namespaces can exist at once; claims beyond that stay "
                    "Pending.",
                ),
                Value(
                    "warm",
                    integer(0),
                    4,
                    "Namespaces kept ready ahead of claims for the DeviceClass's default "
                    "settings (the warm pool): a claim asking for nothing else gets one with "
                    "one write instead of making one. Counted in pool.size. 0 turns it off "
                    "(and removes the namespaces it kept).",
                ),
                Value(
                    "attributes",
                    ATTRIBUTES,
                    {"profile": "standard"},
                    "Attributes every slot carries, for CEL selectors in claims (name: value).",
                ),
                Value(
                    "bindingConditions",
                    choice(BINDING_CONDITIONS),
                    "off",
                    "off: pods bind at once and the kubelet plugin waits (bounded by "
                    "kubeletPlugin.waitTimeout) for the namespace; a failure shows on the pod "
                    "within seconds. auto: publish binding conditions where the cluster supports "
                    "them (1.36+), so a pod binds only once its namespace is ready, at the cost "
                    "of the scheduler's 5 s re-check on every pod (docs/performance.md); on: "
                    "always.",
                ),
            ),
            "The pool of namespace slots published as ResourceSlices.",
        ),
        Group(
            "policy",
            _namespace_config(schema.POLICY),
            "Admin policy: what claims may ask for (enforced by the controller and the "
            "plugin; admission checks structure and types only).",
        ),
        Group(
            "defaults",
            _namespace_config(schema.SETTINGS),
            "Defaults for what a claim does not ask for itself (any NamespaceConfig field).",
        ),
        Value(
            "apiServerURL",
            text("https?://[^\\s]+"),
            "https://kubernetes.default.svc",
            "The API server URL written into pods' kubeconfigs and *_CLUSTER env vars.",
        ),
        Group(
            "admissionPolicy",
            (
                Value(
                    "enabled",
                    boolean(),
                    True,
                    "Install the ValidatingAdmissionPolicies: NamespaceConfig structure, and the "
                    "tenancy guarantees of docs/security.md (node-scoped token minting, token "
                    "lifetimes, protected namespace contents, claim size and nesting, the "
                    "controller's reach). Turning this off removes those guarantees.",
                ),
            ),
            "What the API server enforces at admission, whatever our code does.",
        ),
        Group(
            "ownershipKey",
            (
                Value(
                    "existingSecret",
                    text(DNS_SUBDOMAIN, empty=True),
                    "",
                    "A Secret in the release namespace holding the key (field hmac-key, 32 "
                    "bytes or more) that signs the namespaces the controller creates. Empty: "
                    "the controller creates <fullname>-ownership on its first start; it is not "
                    "part of the rendered manifests, so rendering twice gives the same output "
                    "and upgrades, GitOps and uninstall keep it.",
                ),
            ),
            "The key that proves a namespace was made by this controller (only signed "
            "namespaces are ever deleted).",
        ),
        Group(
            "networkPolicy",
            (
                Group(
                    "dns",
                    (
                        Value(
                            "namespaceSelector",
                            string_map(),
                            {"kubernetes.io/metadata.name": "kube-system"},
                            "Labels of the namespace the cluster DNS pods run in.",
                        ),
                        Value(
                            "podSelector",
                            string_map(),
                            {"k8s-app": "kube-dns"},
                            "Labels of the cluster DNS pods.",
                        ),
                        Value(
                            "cidrs",
                            array(text("[0-9a-fA-F:.]+/[0-9]{1,3}", max_length=64)),
                            [],
                            "Addresses of a DNS server that does not run as a pod (CIDRs).",
                        ),
                    ),
                    "Where pods of a deny-all namespace may send DNS queries (port 53): only "
                    "there, not to any address.",
                ),
            ),
            "The NetworkPolicies the controller puts into namespaces.",
        ),
        Value("logFormat", choice(LOG_FORMATS), "text", "Log encoding of both components."),
        Value("logLevel", choice(LOG_LEVELS), "info", "Log level of both components."),
        Group(
            "controller",
            (
                Value(
                    "replicas",
                    integer(1),
                    1,
                    "More than one replica is safe: a Lease elects the only active one.",
                ),
                Value("workers", integer(1), 32, "Claims reconciled concurrently."),
                Value(
                    "resyncPeriod",
                    seconds(),
                    300,
                    "Seconds between full resyncs and garbage-collection sweeps.",
                ),
                Value(
                    "protectedNamespaces",
                    array(text(DNS_LABEL, max_length=63)),
                    [],
                    "Namespaces never deleted, besides default, kube-system, kube-public, "
                    "kube-node-lease and the release namespace.",
                ),
                Value("metricsPort", port(), 8080, "Port of /metrics, /healthz and /readyz."),
                *_scheduling(
                    "controller",
                    {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                    [],
                    "",
                ),
                service_account("controller"),
                *CONTROLLER_SECURITY,
                DISRUPTION_BUDGET,
            ),
            "The controller Deployment: publishes the pool, provisions and deletes namespaces.",
        ),
        Group(
            "kubeletPlugin",
            (
                Value(
                    "kubeletRegistrarDirectoryPath",
                    path(),
                    "/var/lib/kubelet/plugins_registry",
                    "The kubelet's plugin registration directory on the host.",
                ),
                Value(
                    "kubeletPluginsDirectoryPath",
                    path(),
                    "/var/lib/kubelet/plugins",
                    "The kubelet's plugins directory on the host (the DRA socket goes there).",
                ),
                Value(
                    "cdiDirectoryPath",
                    path(),
                    "/var/run/cdi",
                    "Host directory the container runtime reads CDI specs from.",
                ),
                Value(
                    "artifactDirectoryPath",
                    path(),
                    "/var/run/claim-artifacts",
                    "Host directory for per-claim kubeconfig, token and CA files.",
                ),
                Value(
                    "waitTimeout",
                    seconds(45),
                    20,
                    "Seconds NodePrepareResources waits for the controller (the kubelet "
                    "allows 45).",
                ),
                Value(
                    "mintAhead",
                    boolean(),
                    True,
                    "Read the claim and mint its token once the node is listed on its "
                    "namespace, before the kubelet asks (docs/performance.md); lets the plugin "
                    "list and watch namespaces (docs/security.md). false: in the prepare.",
                ),
                Value(
                    "tokenLifetime",
                    integer(schema.MIN_TOKEN_SECONDS, schema.MAX_TOKEN_SECONDS),
                    _TOKEN_DEFAULT,
                    "Token lifetime when no NamespaceConfig sets one (only with "
                    "deviceClass.create=false; otherwise defaults.tokenExpirationSeconds "
                    "applies).",
                ),
                Group(
                    "health",
                    (
                        Value(
                            "checkInterval",
                            seconds(),
                            10,
                            "Seconds between reads of each prepared claim (jittered).",
                        ),
                        Value(
                            "credentialCheckInterval",
                            seconds(),
                            60,
                            "Most seconds between token requests per device (jittered).",
                        ),
                        Value(
                            "failureThreshold",
                            integer(1),
                            3,
                            "Failures in a row before Unhealthy (refused) or Unknown.",
                        ),
                    ),
                    "Device health in pods' allocatedResourcesStatus (docs/health.md).",
                ),
                Value("metricsPort", port(), 8081, "Port of /metrics, /healthz and /readyz."),
                *_scheduling(
                    "kubelet plugin",
                    {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}},
                    # It must run wherever pods may use a namespace claim.
                    [{"operator": "Exists"}],
                    "system-node-critical",
                ),
                service_account("kubelet plugin"),
                *PLUGIN_SECURITY,
            ),
            "The kubelet plugin DaemonSet: prepares claims on every node.",
        ),
        METRICS,
    ),
)
