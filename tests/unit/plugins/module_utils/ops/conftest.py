"""The trusted runtime directory the ops tests share (the fake QEMU fixture, ``fake``, is in tests/unit/conftest.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir


@pytest.fixture
def rd(tmp_path) -> Iterator[RunDir]:
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened:
        yield opened
