"""Fixtures for unit tests that run a command's ``main`` in this process."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def kept_logging() -> Iterator[None]:
    """``main`` configures the root logger (space_dra.logs.configure); put pytest's back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
