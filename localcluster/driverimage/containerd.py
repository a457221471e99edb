"""Getting a built image into the local cluster (every node's containerd), and build-then-import.

Building needs no cluster; importing does. The import is skipped when containerd already has the
reference at the same digest, and checked afterwards, so ``ensure_driver_image`` costs a few
hundred milliseconds when nothing changed.
"""

from __future__ import annotations

from localcluster import fetch, images
from localcluster.driverimage.build import DriverImage, build_driver_image
from localcluster.layout import Layout


def import_driver_image(image: DriverImage, layout: Layout | None = None) -> bool:
    """Import the archive into every node's containerd that lacks that digest.

    Returns whether it imported. The cluster must be up (``python -m localcluster up``).
    """
    layout = layout or Layout.default()
    ctr = fetch.binaries(layout).ctr
    return images.import_into_nodes(
        ctr, layout.containerd_sockets(), image.archive, image.reference, image.digest
    )


def ensure_driver_image(
    layout: Layout | None = None, *, rebuild: bool = False, refresh: bool = False
) -> str:
    """Build the driver image if its inputs changed and import it into the running local cluster.

    Returns the image reference (``localhost/space-dra/driver:<version>``), which pods use with
    ``imagePullPolicy: IfNotPresent`` or ``Never``. A few hundred milliseconds when nothing
    changed. The tag is re-pointed when the sources change; running pods keep the image they
    started with.
    """
    image = build_driver_image(layout, rebuild=rebuild, refresh=refresh)
    import_driver_image(image, layout)
    return image.reference
