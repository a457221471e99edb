"""The user's cluster, context and default namespace, found the way kubectl finds them.

``--kubeconfig`` names one file; otherwise ``KUBECONFIG`` lists files (``:``-separated, missing
ones skipped) merged with the first file winning for each cluster, user, context and the
current context, as kubectl merges them; otherwise ``~/.kube/config``; otherwise, inside a
pod, the pod's ServiceAccount. Relative paths in a file are resolved against that file's
directory before merging. ``--context`` picks a context; the context's namespace is the
default for ``-n``. The result is the configuration :class:`space_dra.kube.LightkubeAPI` takes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import KubeConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from space_dra.kube_config import load_config

DEFAULT_KUBECONFIG = "~/.kube/config"
# Entries of a kubeconfig that name files.
_PATH_KEYS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
}


class KubeconfigError(Exception):
    """The configuration cannot be used; the message is one line."""


@dataclass(frozen=True)
class UserConfig:
    config: KubeConfig
    context: str
    namespace: str


def _load_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc}".replace("\n", " ")) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a YAML mapping")
    for section, (inner, keys) in _PATH_KEYS.items():
        for entry in data.get(section) or []:
            body = entry.get(inner) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for key in keys:
                value = body.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    body[key] = str(path.parent / value)
    return data


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """kubectl's merge: the first file to define a name (or the current context) wins."""
    sections: dict[str, list[dict[str, Any]]] = {"clusters": [], "contexts": [], "users": []}
    current = ""
    for document in documents:
        for section, entries in sections.items():
            taken = {entry.get("name") for entry in entries}
            entries += [
                entry
                for entry in document.get(section) or []
                if isinstance(entry, dict) and entry.get("name") not in taken
            ]
        current = current or str(document.get("current-context") or "")
    return {**sections, "current-context": current or None}


def kubeconfig_files(flag: str | None, env: Mapping[str, str]) -> list[Path]:
    """The files to merge, in order; empty means the in-cluster configuration."""
    if flag:
        path = Path(flag).expanduser()
        if not path.is_file():
            raise KubeconfigError(f"kubeconfig {flag} not found")
        return [path]
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        existing = [p for p in listed if p.is_file()]
        if not existing:
            raise KubeconfigError(f"none of the files in KUBECONFIG exist: {env['KUBECONFIG']}")
        return existing
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    if default.is_file():
        return [default]
    if env.get("KUBERNETES_SERVICE_HOST"):
        return []
    raise KubeconfigError(
        f"no kubeconfig: pass --kubeconfig, set KUBECONFIG or create {DEFAULT_KUBECONFIG}"
    )


def load_user_config(
    flag: str | None, context: str | None, env: Mapping[str, str] | None = None
) -> UserConfig:
    files = kubeconfig_files(flag, os.environ if env is None else env)
    try:
        if not files:
            config = load_config(None)
        else:
            merged = merge([_load_file(path) for path in files])
            config = KubeConfig.from_dict(merged, fname=files[0])
        if context is not None:
            if context not in config.contexts:
                raise KubeconfigError(f'context "{context}" not found in the kubeconfig')
            config.current_context = context
        if not config.current_context:
            raise KubeconfigError("the kubeconfig has no current context: pass --context")
        selected = config.get()
    except (LightkubeConfigError, KeyError, TypeError, ValueError) as exc:
        raise KubeconfigError(f"invalid kubeconfig: {exc}") from exc
    assert selected is not None  # get() without a default raises instead
    return UserConfig(config, selected.context_name, selected.namespace)
