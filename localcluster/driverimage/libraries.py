"""The check that every ELF file in a layer finds the shared libraries it needs in the image.

The base is unpacked without dpkg and the wheels are installed without the image's package
manager ever seeing them, so nothing else notices a missing library: manylinux wheels expect some
from the system (libstdc++, for grpcio), and a missing one would only show when the extension is
first imported in the cluster. The build reads each ELF file's ``NEEDED`` entries with ``readelf``
and fails with the list of what is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from localcluster.driverimage.commands import run

# Where the dynamic loader looks in a Debian amd64 image (merged /usr: /lib is usr/lib).
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64")


def check_shared_libraries(trees: Sequence[Path], under: str) -> None:
    """Every ELF file below ``under`` finds each library it needs in the image made of ``trees``
    (top first): in its RUNPATH/RPATH (``$ORIGIN`` expanded) or the system library dirs.

    manylinux wheels may expect some libraries from the system (libstdc++, for grpcio); a missing
    one only shows when the extension is imported, so the build checks them all."""
    readelf = shutil.which("readelf")
    if readelf is None:
        raise RuntimeError("readelf (binutils) is needed to check the image's shared libraries")

    def present(image_path: str) -> bool:
        return any(os.path.lexists(t / image_path.lstrip("/")) for t in trees)

    missing: list[str] = []
    for tree in trees:
        top = tree / under.lstrip("/")
        if not top.is_dir():
            continue
        for f in sorted(top.rglob("*")):
            if f.is_symlink() or not f.is_file():
                continue
            with f.open("rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            out = run([readelf, "-d", "-W", f]).stdout
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
            paths = re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.+?)\]", out)
            origin = "/" + str(f.parent.relative_to(tree))
            dirs = [
                os.path.normpath(d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
                for entry in paths
                for d in entry.split(":")
            ] + ["/" + d for d in LIBRARY_DIRS]
            for lib in needed:
                if not any(present(f"{d}/{lib}") for d in dirs):
                    missing.append(f"/{f.relative_to(tree)} needs {lib}")
    if missing:
        raise RuntimeError("libraries missing from the image:\n" + "\n".join(missing))
