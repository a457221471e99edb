"""The schema is the one source: generated files are fresh and agree with the code."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import fields
from typing import Any

import pytest
import yaml

from localcluster import releases
from space_dra import cli, schema
from space_dra.config import (
    SOURCE_CLAIM,
    SOURCE_CLASS,
    ConfigError,
    Policy,
    Settings,
    load_policy,
    parse_document,
    resolve,
)
from space_dra.schema_doc import README_BEGIN, example_yaml
from space_dra.schema_types import BINDING_CONDITIONS, LOG_FORMATS, LOG_LEVELS, Group, Value
from space_dra.schema_values import VALUES
from tests.support.claims import namespace_config as doc
from tests.support.gotools import REPO
from tests.support.hostdriver import CHART


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genschema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_a_stale_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import genschema
    finally:
        sys.path.remove(str(REPO / "tools"))
    stale = tmp_path / "values.yaml"
    stale.write_text("pool: {size: 1}\n")
    monkeypatch.setattr(genschema, "outputs", lambda: {stale: lambda _: "pool: {size: 32}\n"})
    monkeypatch.setattr(genschema, "REPO", tmp_path)
    assert genschema.main(["--check"]) == 1
    assert stale.read_text() == "pool: {size: 1}\n"
    assert genschema.main([]) == 0
    assert stale.read_text() == "pool: {size: 32}\n"


def test_dataclasses_mirror_the_schema() -> None:
    assert [f.name for f in fields(Settings)] == [item.attr for item in schema.SETTINGS]
    assert [f.name for f in fields(Policy)] == [item.attr for item in schema.POLICY]
    for item in schema.SETTINGS:
        expected = tuple(item.default) if isinstance(item.default, list) else item.default
        assert getattr(Settings(), item.attr) == expected, item.name


# Templates must be named by the installation's policy (a DeviceClass can only narrow it).
EXAMPLE_INSTALLATION = load_policy({"allowedTemplates": ["team-defaults"]})


@pytest.mark.parametrize("item", schema.SETTINGS, ids=lambda item: item.name)
def test_each_setting_example_is_accepted_from_a_claim(item: schema.Field) -> None:
    # The policy that lets every example through shows the examples are consistent.
    policy = {"allowedRoles": ["admin", "edit", "view"], "maxTokenExpirationSeconds": 86400}
    resolved = resolve(
        [(SOURCE_CLASS, doc(policy=policy)), (SOURCE_CLAIM, doc(**{item.name: item.example}))],
        installation=EXAMPLE_INSTALLATION,
    )
    value = getattr(resolved.settings, item.attr)
    assert value == (item.example if not isinstance(item.example, list) else tuple(item.example))


@pytest.mark.parametrize("item", schema.POLICY, ids=lambda item: item.name)
def test_each_policy_example_is_accepted_from_a_device_class(item: schema.Field) -> None:
    parsed = parse_document(doc(policy={item.name: item.example}), SOURCE_CLASS)
    example = tuple(item.example) if isinstance(item.example, list) else item.example
    assert parsed.policy == {item.attr: example}


def test_policy_is_refused_from_a_claim_whatever_its_content() -> None:
    with pytest.raises(ConfigError, match="only a DeviceClass may set policy"):
        parse_document(doc(policy={}), SOURCE_CLAIM)


def test_values_yaml_defaults_and_policy_resolve_to_the_schema_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    parameters = doc(**values["defaults"], policy=values["policy"])
    resolved = resolve([(SOURCE_CLASS, parameters)])
    assert resolved.settings == Settings()
    assert resolved.policy == Policy()


def test_readme_shows_the_generated_example() -> None:
    readme = (REPO / "README.md").read_text()
    assert README_BEGIN in readme
    assert example_yaml() in readme
    assert "docs/configuration.md" in readme
    # The example is a valid DeviceClass config.
    resolve([(SOURCE_CLASS, yaml.safe_load(example_yaml()))], installation=EXAMPLE_INSTALLATION)


def test_reference_documents_every_field_and_value() -> None:
    reference = (REPO / "docs" / "configuration.md").read_text()
    for item in (*schema.SETTINGS, *schema.POLICY):
        assert f"#### `{item.name}`" in reference

    def leaves(group: Group, prefix: str = "") -> list[str]:
        names = []
        for child in group.children:
            if isinstance(child, Group):
                names += leaves(child, f"{prefix}{child.name}.")
            else:
                names.append(f"{prefix}{child.name}")
        return names

    names = leaves(VALUES)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {name.split(".")[0] for name in names} == set(values)
    for name in names:
        assert f"| `{name}` |" in reference, name


def _choices(command: str, flag: str) -> tuple[str, ...]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return tuple(action.choices or ())


def test_chart_enums_are_the_flags_choices() -> None:
    assert _choices("controller", "--log-format") == LOG_FORMATS
    assert _choices("kubelet-plugin", "--log-level") == LOG_LEVELS
    assert _choices("controller", "--binding-conditions") == BINDING_CONDITIONS


def test_vapcheck_builds_against_a_supported_kubernetes_release() -> None:
    # One of the releases the local cluster runs (their admission CEL runs for real on each in
    # `make test-matrix`; this offline check compiles with one of them).
    gomod = (REPO / "tests" / "vapcheck" / "go.mod").read_text()
    supported = {f"v{r.staging_version}" for r in releases.all_releases()}
    found_versions = set()
    for module in ("k8s.io/apiserver", "k8s.io/api", "k8s.io/apimachinery"):
        found = re.search(rf"^\s*{re.escape(module)} (\S+)", gomod, re.MULTILINE)
        assert found is not None and found[1] in supported, (module, supported)
        found_versions.add(found[1])
    assert len(found_versions) == 1, found_versions


def _declared(node: Group | Value, prefix: str = "") -> set[str]:
    name = f"{prefix}{node.name}"
    if isinstance(node, Value):
        return {name}
    below = {n for child in node.children for n in _declared(child, f"{name}." if name else "")}
    return below | ({name} if name else set())


def test_every_value_a_template_reads_is_declared() -> None:
    """A template reading an undeclared value would get nil where a user's setting is refused."""
    declared = _declared(VALUES)
    read = set()
    for template in (CHART / "templates").iterdir():
        read |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()))
    assert read, "the templates read values"
    assert read - declared == set()
