"""An in-memory API server for unit tests and benchmarks (see :mod:`.server`)."""

from space_dra.kube_memory.objects import AdmissionHook
from space_dra.kube_memory.server import MemoryKube

__all__ = ["AdmissionHook", "MemoryKube"]
