"""The layering, written down as a check: who may import whom, and how long a module may grow.

Imports go one way: the controller and the kubelet plugin sit on a shared core and never import each
other; the core imports neither; the kubectl plugin ``space_dra.kubectl`` (a read-only view for
users) uses the core and the config schema only, and nothing else in ``space_dra`` uses it;
``localcluster`` (the test cluster) never imports the driver; ``bench/`` uses ``localcluster`` only
through its public API; the namespace-agnostic kubelet protocol layer ``space_dra.kubeletplugin``
uses nothing of the driver but the generated protocol, logs and metrics (which use nothing else
either), a rule that applies once the package exists. ``tests/`` may import anything. No
hand-written module in ``src/`` grows past 400 lines (the few over it today may only shrink).

Imports are read with ``ast`` from the source files (every ``import`` statement, also inside
functions and ``if TYPE_CHECKING:``), so the check needs nothing installed and runs in
``make lint``. Dynamic imports (``importlib.import_module``) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONTROLLER = "space_dra.controller"
PLUGIN = "space_dra.plugin"
KUBELETPLUGIN = "space_dra.kubeletplugin"
KUBECTL = "space_dra.kubectl"
# The shared core both components sit on (a module here may later become a package of the same
# name: the rules cover its submodules too).
CORE = tuple(
    f"space_dra.{name}"
    for name in (
        "config",
        "contract",
        "kube",
        "kube_config",
        "kube_memory",
        "naming",
        "quantity",
        "logs",
        "metrics",
        "faults",
        "httpserver",
        "times",
    )
)
# All the kubelet protocol layer may use of the driver: it must stay free of namespaces.
KUBELETPLUGIN_MAY_USE = (KUBELETPLUGIN, "space_dra.proto", "space_dra.logs", "space_dra.metrics")
# All the kubectl plugin may use of the driver: the core and the schema the config is declared in.
KUBECTL_MAY_USE = (KUBECTL, *CORE, "space_dra.schema")
# localcluster's public API: these modules and the names in their ``__all__``.
LOCALCLUSTER_PUBLIC = ("localcluster", "localcluster.driverimage")

# Trees whose modules the rules judge, as (directory, package-name prefix) pairs.
TREES = ((REPO / "src", ""), (REPO / "localcluster", "localcluster"), (REPO / "bench", "bench"))

MAX_LINES = 400
# Hand-written modules in src/ over MAX_LINES today, each with its line count as a ceiling: they
# may only shrink. An entry goes when its module is split (the test fails while a stale entry
# stays, so the list cannot outlive the problem).
OVERSIZE_CEILINGS: dict[str, int] = {}


def generated(path: Path) -> bool:
    """The protobuf/gRPC stubs tools/genproto.py writes (the pattern ruff excludes too)."""
    return path.name.endswith(".py") and "_pb2" in path.name


@dataclass(frozen=True)
class Import:
    """One imported thing: ``target`` is the module; ``name`` the attribute taken from it, if
    the statement was ``from target import name`` and ``name`` is not itself a module."""

    importer: str
    path: Path
    line: int
    target: str
    name: str | None = None

    def where(self) -> str:
        path = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{path}:{self.line}: {self.importer} imports {self.target}" + (
            f".{self.name}" if self.name else ""
        )


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path, root: Path, prefix: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([prefix, *parts] if prefix else parts)


def module_files(trees: Iterable[tuple[Path, str]]) -> dict[str, Path]:
    """Every module of ``trees`` (generated ones too) by its dotted name."""
    found = {}
    for root, prefix in trees:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path, root, prefix)] = path
    return found


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> list[Import]:
    """What ``module`` (the file ``path``) imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    found.append(Import(module, path, node.lineno, sub))
                else:
                    found.append(Import(module, path, node.lineno, base, alias.name))
    return found


def public_names(known: Mapping[str, Path]) -> dict[str, frozenset[str]]:
    """``__all__`` of each public localcluster module, read from its source."""
    names = {}
    for module in LOCALCLUSTER_PUBLIC:
        tree = ast.parse(known[module].read_text())
        exported = [
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ]
        if len(exported) != 1 or not isinstance(exported[0], ast.List | ast.Tuple):
            raise AssertionError(f"{known[module]}: needs one literal __all__ (its public API)")
        names[module] = frozenset(ast.literal_eval(exported[0]))
    return names


# --- the rules: each returns why an import is forbidden, or None ---------------------------------
Rule = Callable[[Import], str | None]


def components_independent(imp: Import) -> str | None:
    for a, b in ((CONTROLLER, PLUGIN), (PLUGIN, CONTROLLER)):
        if within(imp.importer, a) and within(imp.target, b):
            return f"{a} and {b} never import each other"
    return None


def core_below_components(imp: Import) -> str | None:
    if any(within(imp.importer, c) for c in CORE) and any(
        within(imp.target, c) for c in (CONTROLLER, PLUGIN)
    ):
        return "the core imports neither the controller nor the plugin"
    return None


def localcluster_standalone(imp: Import) -> str | None:
    if within(imp.importer, "localcluster") and within(imp.target, "space_dra"):
        return "localcluster never imports space_dra (it runs the driver from its image)"
    return None


def kubeletplugin_namespace_agnostic(imp: Import) -> str | None:
    """What the layer may use is closed: the modules it may use obey the same rule, so nothing
    else of the driver comes in through them either."""
    user = next((m for m in KUBELETPLUGIN_MAY_USE if within(imp.importer, m)), None)
    if (
        user is not None
        and within(imp.target, "space_dra")
        and not any(within(imp.target, m) for m in KUBELETPLUGIN_MAY_USE)
    ):
        who = KUBELETPLUGIN if user == KUBELETPLUGIN else f"{user} (used by {KUBELETPLUGIN})"
        return f"{who} uses nothing of space_dra but {', '.join(KUBELETPLUGIN_MAY_USE)}"
    return None


def kubectl_uses_the_core_only(imp: Import) -> str | None:
    if (
        within(imp.importer, KUBECTL)
        and within(imp.target, "space_dra")
        and not any(within(imp.target, m) for m in KUBECTL_MAY_USE)
    ):
        return f"{KUBECTL} uses nothing of space_dra but {', '.join(KUBECTL_MAY_USE)}"
    if (
        within(imp.target, KUBECTL)
        and within(imp.importer, "space_dra")
        and not within(imp.importer, KUBECTL)
    ):
        return f"nothing else in space_dra imports {KUBECTL}"
    return None


def bench_uses_public_localcluster(public: Mapping[str, frozenset[str]]) -> Rule:
    def rule(imp: Import) -> str | None:
        if not (within(imp.importer, "bench") and within(imp.target, "localcluster")):
            return None
        if imp.target in public and (imp.name is None or imp.name in public[imp.target]):
            return None
        api = "; ".join(f"{m}: {', '.join(sorted(n))}" for m, n in public.items())
        return f"bench uses localcluster only through its public API ({api})"

    return rule


def violations(imports: Iterable[Import], rules: Iterable[Rule]) -> list[str]:
    rules = list(rules)
    return [f"{imp.where()}: {why}" for imp in imports for rule in rules if (why := rule(imp))]


def repository_imports() -> tuple[list[Import], dict[str, Path]]:
    known = module_files(TREES)
    return [imp for m, p in known.items() for imp in imports_of(m, p, known)], known


def test_the_repository_keeps_its_layering() -> None:
    imports, known = repository_imports()
    rules = [
        components_independent,
        core_below_components,
        localcluster_standalone,
        kubeletplugin_namespace_agnostic,
        kubectl_uses_the_core_only,
        bench_uses_public_localcluster(public_names(known)),
    ]
    found = violations(imports, rules)
    if found:
        pytest.fail("imports against the layering:\n" + "\n".join(found), pytrace=False)


def test_the_layers_the_rules_name_exist() -> None:
    """A rule about a module that is gone can never fail: rename the rule with the module."""
    _, known = repository_imports()
    missing = [
        m
        for m in (CONTROLLER, PLUGIN, KUBELETPLUGIN, KUBECTL, *CORE, *LOCALCLUSTER_PUBLIC)
        if m not in known
    ]
    assert missing == [], "update the names at the top of tests/unit/test_layering.py"


# --- the rules catch what they forbid, and allow what they allow ---------------------------------
def _imp(importer: str, target: str, name: str | None = None) -> Import:
    return Import(importer, Path("x.py"), 1, target, name)


PUBLIC = {"localcluster": frozenset({"ensure_cluster"}), "localcluster.driverimage": frozenset()}


@pytest.mark.parametrize(
    ("rule", "forbidden", "allowed"),
    [
        (
            components_independent,
            _imp("space_dra.controller.reconciler", "space_dra.plugin.driver"),
            _imp("space_dra.controller.reconciler", "space_dra.controller.gc"),
        ),
        (
            components_independent,
            _imp("space_dra.plugin", "space_dra.controller", "main"),
            _imp("space_dra.plugin.driver", "space_dra.faults"),
        ),
        (
            core_below_components,
            _imp("space_dra.config.schema", "space_dra.plugin.cdi"),
            _imp("space_dra.config", "space_dra.quantity"),
        ),
        (
            localcluster_standalone,
            _imp("localcluster.driverimage.venv", "space_dra"),
            _imp("localcluster.driverimage.venv", "localcluster.driverlayout"),
        ),
        (
            kubeletplugin_namespace_agnostic,
            _imp("space_dra.kubeletplugin.server", "space_dra.contract"),
            _imp("space_dra.kubeletplugin.server", "space_dra.proto.dra.v1.api_pb2"),
        ),
        (
            kubeletplugin_namespace_agnostic,
            _imp("space_dra.kubeletplugin", "space_dra", "__version__"),
            _imp("space_dra.kubeletplugin", "space_dra.logs", "log_event"),
        ),
        (
            kubeletplugin_namespace_agnostic,
            _imp("space_dra.metrics", "space_dra.contract", "DEFAULT_DRIVER_NAME"),
            _imp("space_dra.metrics", "prometheus_client", "Counter"),
        ),
        (
            kubectl_uses_the_core_only,
            _imp("space_dra.kubectl.fetch", "space_dra.controller.status"),
            _imp("space_dra.kubectl.fetch", "space_dra.kube", "ControllerAPI"),
        ),
        (
            kubectl_uses_the_core_only,
            _imp("space_dra.kubectl.detail", "space_dra.plugin.plan"),
            _imp("space_dra.kubectl.detail", "space_dra.schema"),
        ),
        (
            kubectl_uses_the_core_only,
            _imp("space_dra.controller.main", "space_dra.kubectl.model"),
            _imp("space_dra.kubectl.cli", "space_dra.kubectl.model"),
        ),
        (
            bench_uses_public_localcluster(PUBLIC),
            _imp("bench.cluster", "localcluster.cluster", "LocalCluster"),
            _imp("bench.cluster", "localcluster", "ensure_cluster"),
        ),
        (
            bench_uses_public_localcluster(PUBLIC),
            _imp("bench.cluster", "localcluster", "fetch"),
            _imp("bench.cluster", "localcluster.driverimage"),
        ),
    ],
)
def test_a_rule_refuses_what_it_forbids(rule: Rule, forbidden: Import, allowed: Import) -> None:
    assert violations([forbidden], [rule]) != []
    assert violations([allowed], [rule]) == []


def test_a_kubeletplugin_package_is_judged_once_it_exists(tmp_path: Path) -> None:
    """The same scan the repository gets finds the package, its relative and nested imports."""
    pkg = tmp_path / "space_dra"
    for rel, text in {
        "__init__.py": "",
        "logs.py": "",
        "contract.py": "",
        "plugin/__init__.py": "",
        "plugin/driver.py": "",
        "kubeletplugin/__init__.py": "from . import service\nfrom .. import logs\n",
        "kubeletplugin/service.py": (
            "def later() -> None:\n    from ..plugin import driver\n"
            "from space_dra import contract\n"
        ),
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    known = module_files([(tmp_path, "")])
    imports = [imp for m, p in known.items() for imp in imports_of(m, p, known)]
    assert sorted((i.importer, i.target, i.line) for i in imports) == [
        ("space_dra.kubeletplugin", "space_dra.kubeletplugin.service", 1),
        ("space_dra.kubeletplugin", "space_dra.logs", 2),
        ("space_dra.kubeletplugin.service", "space_dra.contract", 3),
        ("space_dra.kubeletplugin.service", "space_dra.plugin.driver", 2),
    ]
    found = violations(imports, [kubeletplugin_namespace_agnostic])
    assert sorted(v.split(": ")[1] for v in found) == [
        "space_dra.kubeletplugin.service imports space_dra.contract",
        "space_dra.kubeletplugin.service imports space_dra.plugin.driver",
    ]


# --- module size ---------------------------------------------------------------------------------
def handwritten_line_counts() -> dict[str, int]:
    return {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for path in sorted((REPO / "src").rglob("*.py"))
        if "__pycache__" not in path.parts and not generated(path)
    }


def test_no_handwritten_module_in_src_grows_past_its_limit() -> None:
    counts = handwritten_line_counts()
    too_long = {
        path: f"{n} lines > {OVERSIZE_CEILINGS.get(path, MAX_LINES)}"
        for path, n in counts.items()
        if n > OVERSIZE_CEILINGS.get(path, MAX_LINES)
    }
    if too_long:
        pytest.fail(
            f"split these modules (one concern each, at most {MAX_LINES} lines):\n"
            + "\n".join(f"{path}: {why}" for path, why in too_long.items()),
            pytrace=False,
        )


def test_the_oversize_list_holds_only_oversized_modules() -> None:
    counts = handwritten_line_counts()
    stale = {p: counts.get(p) for p in OVERSIZE_CEILINGS if counts.get(p, 0) <= MAX_LINES}
    if stale:
        pytest.fail(
            "split (or gone), so remove their entries from OVERSIZE_CEILINGS:\n"
            + "\n".join(f"{path}: {n} lines" for path, n in stale.items()),
            pytrace=False,
        )


def test_generated_stubs_are_the_only_modules_left_out() -> None:
    left_out = [
        p
        for p in (REPO / "src").rglob("*.py")
        if generated(p) and not p.is_relative_to(REPO / "src/space_dra/proto")
    ]
    assert left_out == []
