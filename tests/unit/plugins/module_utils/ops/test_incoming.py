"""The target side of a migration without QEMU: which unix migration sockets it may replace."""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import incoming


def test_a_missing_target_is_fine(tmp_path):
    incoming.check_unix_target(str(tmp_path / "m.sock"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("make", ["file", "dir", "link"])
def test_what_is_not_a_socket_is_never_replaced(tmp_path, make):
    target = tmp_path / "m.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "live.sock"))
    live.listen(1)
    try:
        if make == "file":
            target.write_text("data")
        elif make == "dir":
            target.mkdir()
        else:
            target.symlink_to(tmp_path / "live.sock")  # even a link to a socket: never followed
        with pytest.raises(KvmError, match=f"^migration socket {target} exists and is not a socket; refusing to replace it$"):
            incoming.check_unix_target(str(target))
        assert os.path.lexists(target)
    finally:
        live.close()


def test_a_stale_socket_is_removed_and_a_live_one_refused(tmp_path):
    stale = tmp_path / "stale.sock"
    gone = socket.socket(socket.AF_UNIX)
    gone.bind(str(stale))
    gone.close()  # the file stays, nobody listens
    incoming.check_unix_target(str(stale))
    assert not stale.exists()
    live_path = tmp_path / "live.sock"
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(live_path))
    live.listen(1)
    try:
        with pytest.raises(KvmError, match=f"^migration socket {live_path} is in use by another process$"):
            incoming.check_unix_target(str(live_path))
        assert live_path.exists()
    finally:
        live.close()
