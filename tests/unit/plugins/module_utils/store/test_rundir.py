"""The trusted runtime directory: refusals, no symlink followed, atomic writes, locks that survive absent."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import time

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import MissingDir, RunDir, list_names, open_rundir, paths


def private(path) -> str:
    path.mkdir(mode=0o700)
    return str(path)


def test_foreign_or_writable_dirs_are_refused_naming_owner_mode_and_fix(tmp_path):
    other = private(tmp_path / "other")
    os.chown(other, 12345, 12345)
    with pytest.raises(KvmError) as err:
        RunDir.open(other)
    assert "owned by uid 12345" in str(err.value) and "mode 0700" in str(err.value) and f"chown root {other}" in str(err.value)
    loose = private(tmp_path / "loose")
    os.chmod(loose, 0o777)
    with pytest.raises(KvmError, match="mode 0777"):
        RunDir.open(loose)
    (tmp_path / "link").symlink_to(tmp_path / "loose")
    with pytest.raises(KvmError, match="is a symlink"):
        RunDir.open(str(tmp_path / "link"))
    (tmp_path / "file").write_text("")
    with pytest.raises(KvmError, match="a parent of it is not a directory"):
        RunDir.open(str(tmp_path / "file" / "rt"))


def test_parents_writable_by_others_are_refused(tmp_path):
    shared = private(tmp_path / "shared")
    os.chmod(shared, 0o777)  # not sticky: anyone could rename our directory away
    with pytest.raises(KvmError, match="its parent"):
        RunDir.open(os.path.join(shared, "rt"))
    os.chmod(shared, 0o1777)  # sticky like /tmp: fine
    with RunDir.open(os.path.join(shared, "rt")) as rd:
        assert oct(os.stat(rd.path).st_mode & 0o777) == "0o700"


def test_missing_dir_is_created_only_when_asked(tmp_path):
    assert RunDir.open(str(tmp_path / "a"), create=False) is None
    empty = open_rundir(str(tmp_path / "a"), create=False)
    assert isinstance(empty, MissingDir) and empty.listdir() == [] and empty.read_text("x") is None
    assert not (tmp_path / "a").exists()
    with open_rundir(str(tmp_path / "a" / "b"), create=True) as rd:
        assert os.path.isdir(rd.path)


def test_no_file_operation_follows_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root only")
    with RunDir.open(private(tmp_path / "rt")) as rd:
        for name in ("vm1.serial.log", "vm1.runtime.json", "vm1.lock"):
            os.symlink(victim, rd.join(name))
        with pytest.raises(KvmError, match="is a symlink"):
            rd.open_append("vm1.serial.log")
        with pytest.raises(KvmError, match="is a symlink"):
            rd.read_text("vm1.runtime.json")
        with pytest.raises(KvmError, match="is a symlink"), rd.lock("vm1", keep_if="vm1.runtime.json"):
            pass
        rd.write_atomic("vm1.runtime.json", "{}")  # replaces the link itself
        assert not os.path.islink(rd.join("vm1.runtime.json"))
    assert victim.read_text() == "root only"


def test_foreign_files_inside_are_refused(tmp_path):
    with RunDir.open(private(tmp_path / "rt")) as rd:
        rd.write_atomic("vm1.runtime.json", "{}")
        os.chown(rd.join("vm1.runtime.json"), 12345, 0)
        with pytest.raises(KvmError, match="is owned by uid 12345"):
            rd.read_text("vm1.runtime.json")


def test_atomic_write_leaves_no_temp_and_killed_writers_temps_are_removed(tmp_path, monkeypatch):
    with RunDir.open(private(tmp_path / "rt")) as rd:
        rd.write_atomic("vm1.runtime.json", "one")
        real_rename = os.rename

        def boom(*_args, **_kw):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "rename", boom)
        with pytest.raises(KvmError) as err:
            rd.write_atomic("vm1.runtime.json", "two")
        assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
        monkeypatch.setattr(os, "rename", real_rename)
        assert rd.read_text("vm1.runtime.json") == "one" and rd.listdir() == ["vm1.runtime.json"]
        for leftover in (".vm1.runtime.json.tmp.dead", ".vm1.pid.tmp.dead", ".vm1.b.runtime.json.tmp.other"):
            (tmp_path / "rt" / leftover).write_text("x")
        with rd.lock("vm1", keep_if="vm1.runtime.json"):
            pass
        assert rd.listdir() == [".vm1.b.runtime.json.tmp.other", "vm1.lock", "vm1.runtime.json"]


def _hold_then_remove(directory: str, ready, release) -> None:
    with RunDir.open(directory) as rd, rd.lock("vm1", keep_if="vm1.runtime.json"):
        ready.set()
        release.wait(10)
        rd.unlink("vm1.runtime.json")  # like state=absent: the lock file goes when released


def test_lock_stays_valid_across_absent(tmp_path):
    directory = private(tmp_path / "rt")
    with RunDir.open(directory) as rd:
        rd.write_atomic("vm1.runtime.json", "{}")
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_then_remove, args=(directory, ready, release))
    holder.start()
    assert ready.wait(10)
    with RunDir.open(directory) as rd:
        assert rd.lstat("vm1.lock") is not None  # the holder's lock file
        release.set()
        begin = time.monotonic()
        with rd.lock("vm1", keep_if="vm1.runtime.json"):
            # the waiter held the removed inode for an instant, saw it and locked the new file
            assert rd.lstat("vm1.lock") is not None
            rd.write_atomic("vm1.runtime.json", "{}")
        assert time.monotonic() - begin < 10
    holder.join(10)
    assert holder.exitcode == 0


def test_paths_and_names(tmp_path):
    where = paths(str(tmp_path), "vm-1.a_b")
    assert where.runtime.endswith("vm-1.a_b.runtime.json") and where.qmp_ro.endswith(".ro.qmp")
    for bad in ("", "-x", "a/b", "a b", "x" * 64, "../x"):
        with pytest.raises(KvmError, match="instance name"):
            paths(str(tmp_path), bad)
    with pytest.raises(KvmError, match="longer than 107 bytes"):
        paths("/" + "d" * 96, "vm1")
    assert list_names(["a.runtime.json", "b.runtime.json", "notes.txt", ".x.runtime.json.tmp.1"]) == ["a", "b"]


def test_a_name_with_a_trailing_newline_is_refused(tmp_path):
    with pytest.raises(KvmError, match="instance name"):
        paths(str(tmp_path), "vm1\n")


def test_every_instance_file_has_its_name(tmp_path):
    where = paths(str(tmp_path / "." / "rt"), "vm1")
    assert where.runtime_dir == str(tmp_path / "rt")
    named = {where.runtime, where.journal, where.qmp, where.qmp_ro, where.pidfile, where.serial, where.log, where.lock}
    assert {os.path.basename(p) for p in named} == set(where.all_names())
    assert len(named) == 8 and all(os.path.dirname(p) == where.runtime_dir for p in named)


def test_missing_dir_has_nothing_and_removes_nothing(tmp_path):
    empty = MissingDir(str(tmp_path / "none"))
    assert empty.missing and empty.fd == -1
    assert (empty.lstat("x"), empty.exists("x"), empty.unlink("x"), empty.remove_temps("vm1")) == (None, False, False, None)


def test_listen_replaces_a_leftover_socket_but_never_a_directory(tmp_path):
    with RunDir.open(private(tmp_path / "rt")) as rd:
        first = rd.listen("vm1.qmp")
        first.close()  # a leftover socket file stays
        assert stat.S_ISSOCK(rd.lstat("vm1.qmp").st_mode)
        again = rd.listen("vm1.qmp")
        try:
            assert stat.S_IMODE(rd.lstat("vm1.qmp").st_mode) == 0o600
            probe = socket.socket(socket.AF_UNIX)
            probe.connect(rd.join("vm1.qmp"))  # the new socket listens
            probe.close()
        finally:
            again.close()
        os.mkdir(rd.join("vm1.ro.qmp"))
        with pytest.raises(KvmError, match="is a directory; remove it"):
            rd.listen("vm1.ro.qmp")


def test_unlink_and_remove_temps_touch_only_the_instance(tmp_path):
    with RunDir.open(private(tmp_path / "rt")) as rd:
        for name in (".vm1.pid.tmp.1", ".vm1.pending.json.tmp.2", ".vm10.pid.tmp.3", ".vm1.notes.tmp.4", "vm1.pid"):
            (tmp_path / "rt" / name).write_text("x")
        rd.remove_temps("vm1")
        assert rd.listdir() == [".vm1.notes.tmp.4", ".vm10.pid.tmp.3", "vm1.pid"]
        assert rd.unlink("vm1.pid") is True and rd.unlink("vm1.pid") is False
        os.mkdir(rd.join("vm1.log"))
        with pytest.raises(KvmError, match="cannot remove"):
            rd.unlink("vm1.log")


def test_open_append_appends_and_is_private(tmp_path):
    with RunDir.open(private(tmp_path / "rt")) as rd:
        for text in (b"one\n", b"two\n"):
            fd = rd.open_append("vm1.qemu.log")
            os.write(fd, text)
            os.close(fd)
        assert rd.read_text("vm1.qemu.log") == "one\ntwo\n"
        assert stat.S_IMODE(rd.lstat("vm1.qemu.log").st_mode) == 0o600
        os.chmod(rd.join("vm1.qemu.log"), 0o620)
        with pytest.raises(KvmError, match="is writable by group or others"):
            rd.open_append("vm1.qemu.log")
        os.mkfifo(rd.join("vm1.serial.log"), 0o600)
        with pytest.raises(KvmError, match="is not a regular file"):
            rd.read_text("vm1.serial.log")
