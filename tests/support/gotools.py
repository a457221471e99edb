"""Build the small Go helpers in the test tree once, cached outside the repo."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SPACE_DRA_CACHE", Path.home() / ".cache" / "space-dra"))


def build(module_dir: Path, name: str) -> Path:
    """``go build`` the module in ``module_dir``; the cache key is its sources' hash."""
    digest = hashlib.sha256()
    for path in sorted(module_dir.iterdir()):
        if path.suffix in (".go", ".mod", ".sum"):
            digest.update(path.name.encode() + path.read_bytes())
    binary = CACHE / "bin" / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go toolchain is needed to build " + name)
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    # -trimpath as localcluster builds Kubernetes: the same packages come from Go's build cache.
    subprocess.run(
        [go, "build", "-trimpath", "-o", str(binary), "."], cwd=module_dir, env=env, check=True
    )
    return binary
