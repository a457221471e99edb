"""An in-memory API server for unit tests and benchmarks (see :mod:`.server`)."""

from space_dra.kube_memory.server import AdmissionHook, MemoryKube

__all__ = ["AdmissionHook", "MemoryKube"]
