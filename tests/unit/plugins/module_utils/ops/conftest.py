"""Fixtures the ops tests share: a fake QEMU behind the real qemu.qmp client, and a trusted runtime directory."""

from __future__ import annotations

from typing import Iterator

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir

from ..qemu.test_qmp import FakeQemu


@pytest.fixture
def fake() -> Iterator[FakeQemu]:
    qemu = FakeQemu()
    yield qemu
    qemu.close()


@pytest.fixture
def rd(tmp_path) -> Iterator[RunDir]:
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened:
        yield opened
