"""Creating a namespace under a name the controller chooses.

The name is chosen client-side (see manifests) so the ownership signature can be part of
the create request; a taken name is a Conflict, answered by another random suffix. The
claim path and the warm pool both create this way.
"""

from __future__ import annotations

from collections.abc import Callable

from lightkube.resources.core_v1 import Namespace

from space_dra.controller.manifests import random_name
from space_dra.kube import Conflict, ControllerAPI

NAME_ATTEMPTS = 8


async def create_with_free_name(
    kube: ControllerAPI, prefix: str, build: Callable[[str], Namespace]
) -> Namespace:
    """Create ``build(name)`` for a random name with ``prefix``; after ``NAME_ATTEMPTS``
    taken names the last Conflict is raised (handled like any other API error)."""
    for attempt in range(NAME_ATTEMPTS):
        try:
            created: Namespace = await kube.create(build(random_name(prefix)))
            return created
        except Conflict:
            if attempt == NAME_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
