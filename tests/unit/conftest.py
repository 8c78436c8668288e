"""Hypothesis profiles: ``mutants`` (fixed examples, no example database) is what tests/unit/mutants.py runs with.
The ``fake`` fixture: a fresh FakeQemu (tests/unit/fakes/qemu.py) whose descriptors are closed after the test."""

from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import settings

from .fakes.qemu import FakeQemu

settings.register_profile("mutants", derandomize=True, database=None)


@pytest.fixture
def fake() -> Iterator[FakeQemu]:
    qemu = FakeQemu()
    yield qemu
    qemu.close()
