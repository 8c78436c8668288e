"""Runtime files on disk: round trip through a trusted directory; files given by path opened safely."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir

from ....builders import LEGACY, make_runtime


@pytest.fixture
def rd(tmp_path):
    (tmp_path / "rt").mkdir(mode=0o700)
    with RunDir.open(str(tmp_path / "rt")) as opened:
        yield opened


def test_save_load_round_trip(rd):
    rt = upgrade.upgrade(make_runtime("scsi-hd"))[0]
    runtime_file.save(rd, "vm1", rt)
    loaded, version = runtime_file.load(rd, "vm1")
    assert version == 2 and loaded == rt
    assert oct(os.stat(rd.join("vm1.runtime.json")).st_mode & 0o777) == "0o600"
    assert rd.listdir() == ["vm1.runtime.json"]
    assert runtime_file.load(rd, "ghost") is None


def test_damaged_file_names_itself(rd):
    rd.write_atomic("bad.runtime.json", "{ nope")
    with pytest.raises(KvmError) as err:
        runtime_file.load(rd, "bad")
    assert "not valid JSON" in str(err.value) and rd.join("bad.runtime.json") in str(err.value)


def test_read_path_refuses_symlinks_foreign_and_writable_files(tmp_path):
    good = tmp_path / "old1.runtime.json"
    good.write_text(json.dumps(LEGACY))
    good.chmod(0o600)
    assert runtime_file.read_path(str(good))[1] == 0
    link = tmp_path / "link.runtime.json"
    link.symlink_to(good)
    with pytest.raises(KvmError, match="is a symlink"):
        runtime_file.read_path(str(link))
    good.chmod(0o666)
    with pytest.raises(KvmError, match="not writable by others"):
        runtime_file.read_path(str(good))
    good.chmod(0o600)
    os.chown(good, 12345, 12345)
    with pytest.raises(KvmError, match="owned by uid 12345"):
        runtime_file.read_path(str(good))
    with pytest.raises(KvmError, match="does not exist"):
        runtime_file.read_path(str(tmp_path / "missing.runtime.json"))


def test_dumps_is_sorted_and_indented_and_copy_is_deep():
    rt = upgrade.upgrade(make_runtime())[0]
    text = runtime_file.dumps(rt)
    assert text.endswith("}\n") and text.startswith('{\n  "controllers"') and json.loads(text) == rt
    twin = runtime_file.copy(rt)
    twin["disks"][0]["hvinfo"]["addr"] = "0x1d"
    assert rt["disks"][0]["hvinfo"]["addr"] != "0x1d"


def test_upgrade_errors_name_the_file(rd):
    rd.write_atomic("new.runtime.json", json.dumps({**make_runtime(), "version": 7}))
    with pytest.raises(KvmError) as err:
        runtime_file.load(rd, "new")
    assert str(err.value) == (f"runtime file {rd.join('new.runtime.json')}: runtime format version 7 is newer than this collection "
                              "understands (version 2); upgrade kvmhv.qemu")


def test_read_path_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "vm1.runtime.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KvmError, match="is not a regular file"):
        runtime_file.read_path(str(fifo))  # opened without blocking on the fifo
    binary = tmp_path / "bin.runtime.json"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    with pytest.raises(KvmError, match="cannot read runtime file"):
        runtime_file.read_path(str(binary))
    os.chown(binary, 0, 0)
    binary.write_text(json.dumps(LEGACY))
    assert runtime_file.read_path(str(binary))[0]["name"] == "old1"  # root's own files are trusted


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_read_path_of_a_directory_is_a_clear_error(tmp_path):
    before = open_fds()
    with pytest.raises(KvmError, match="is not a regular file"):
        runtime_file.read_path(str(tmp_path))
    assert open_fds() == before
