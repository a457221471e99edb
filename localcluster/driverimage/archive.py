"""The OCI archive: the three layer trees and the image config written as one cached tarball.

The tar and OCI writing itself is ``localcluster.images`` (shared with the cluster's own images);
this module decides what goes in: the driver image's config (from ``driverlayout``) and the
layers, cached under a key of the layers' own keys, the reference and the config, with the
manifest digest stored beside the archive.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

from localcluster import driverlayout as facts
from localcluster import images
from localcluster.driverimage.cache import Cache, key
from localcluster.driverimage.commands import say


def image_config(version: str) -> images.ImageConfig:
    return images.ImageConfig(
        cmd=list(facts.CMD),
        env=[f"{k}={v}" for k, v in facts.ENV.items()],
        workdir="/",
        labels={
            "org.opencontainers.image.title": "space-dra-driver",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    )


def layer_sizes(archive: Path) -> list[int]:
    """The sizes (bytes) of the archive's layers, bottom first, as its manifest states them."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, object]:
            f = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert f is not None
            loaded: dict[str, object] = json.load(f)
            return loaded

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = blob(index["manifests"][0]["digest"])
        layers = manifest["layers"]
        assert isinstance(layers, list)
        return [int(layer["size"]) for layer in layers]


def write_archive(
    cache: Cache,
    reference: str,
    layers: Sequence[Path],
    config: images.ImageConfig,
    rebuild: bool,
) -> tuple[Path, str]:
    """The OCI archive of ``layers`` (cached by their keys, reference and config), its digest."""
    archive_key = key([p.name for p in layers], reference, config.as_dict())
    archive = cache.root / f"archive-{archive_key}.tar"
    digest_file = archive.with_suffix(".digest")
    if rebuild or not (archive.exists() and digest_file.exists()):
        say(f"writing {archive.name}")
        entries = [images.tree_entries(d) for d in layers]
        digest_file.write_text(images.build_oci_archive(archive, reference, entries, config) + "\n")
        cache.keep_only("archive", archive)
    return archive, digest_file.read_text().strip()
