"""Start, stop, the session and a target's mark without a real QEMU: unix migration targets, the illustrative command line, the public view,
marks, plumbing, and a start whose QEMU (a script started here) fails."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import incoming, start, stop, target
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv, process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths

from ....builders import disk, images, nic, runtime
from ....fakes.qemu import FakeQemu, connect_to


def session_on(rd, check: bool = False) -> Session:
    return Session(Call({}, check=check), rd, paths(rd.path, "vm1"), writer=not check)


# -- unix migration targets -------------------------------------------------------------------------------


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


# -- what modules show -------------------------------------------------------------------------------------------


def test_illustrative_argv_uses_placeholder_descriptors():
    rt = runtime([disk(1), disk(2, type="scsi-hd")], [nic(1, network={"type": "tap", "ifname": "tap0"}), nic(2)])
    ids = [d["hvinfo"]["id"] for d in rt["disks"]]
    cmd = start.illustrative_argv(rt)
    fds = argv.HostFds(3, 4, 5, {ids[0]: (10, False), ids[1]: (11, False)}, {rt["nics"][0]["hvinfo"]["id"]: 100})
    assert cmd == argv.launch_argv(rt, fds)
    assert f"fd=10,set=2,opaque={ids[0]}" in cmd and f"fd=11,set=3,opaque={ids[1]}" in cmd
    assert json.loads(cmd[cmd.index("-netdev") + 1])["fd"] == "100"
    incoming = start.illustrative_argv(rt, incoming=True)
    assert incoming[incoming.index("-incoming") + 1] == "defer" and "-incoming" not in cmd


def test_public(rd):
    rt = runtime([disk(1)], [nic(1)])
    where = paths(rd.path, "vm1")
    shown = start.public(session_on(rd), rt, "running", 4242)
    assert shown == {"name": "vm1", "uuid": rt["uuid"], "status": "running", "pid": 4242, "qmp_socket": where.qmp,
                     "runtime_file": where.runtime, "serial_log": where.serial,
                     "disks": [devices.public(rt["disks"][0])], "nics": [devices.public(rt["nics"][0])],
                     "cmdline": start.illustrative_argv(rt)}
    shown["disks"][0]["hvinfo"]["addr"] = "0x1d"
    assert rt["disks"][0]["hvinfo"]["addr"] == "0x10"


def test_query_socket_prefers_the_read_only_monitor(rd):
    where = paths(rd.path, "vm1")
    session = session_on(rd, check=True)
    assert session.query_socket() == where.qmp
    rd.write_atomic("vm1.ro.qmp", "")
    assert session.query_socket() == where.qmp  # a file of that name is no monitor
    rd.unlink("vm1.ro.qmp")
    sock = rd.listen("vm1.ro.qmp")
    try:
        assert session.query_socket() == where.qmp_ro
    finally:
        sock.close()


def test_status_without_a_qemu(rd):
    session = session_on(rd)
    assert asyncio.run(session.status()) == ("absent", None)
    runtime_file.save(rd, "vm1", runtime([], []))
    assert asyncio.run(session.status()) == ("stopped", None)


def test_settle_incoming(rd, monkeypatch):
    plain = runtime([], [])
    assert asyncio.run(target.settle_incoming(session_on(rd), plain, None)) is plain and rd.listdir() == []
    marked = {**runtime([], []), "mark": "incoming"}
    with pytest.raises(KvmError, match=r"migration target whose migration never completed \(the instance lives on the source\)"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), None))
    fake = FakeQemu()
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    fake.status = "inmigrate"
    with pytest.raises(KvmError, match="still waiting for its migration"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    fake.status = "running"
    settled = asyncio.run(target.settle_incoming(session_on(rd, check=True), dict(marked), 4242))
    assert "mark" not in settled and rd.listdir() == []
    asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert "mark" not in runtime_file.load(rd, "vm1")[0]

    async def statuses() -> list[tuple[str, int | None]]:
        session = session_on(rd)
        seen = [await session.status()]
        fake.status = "inmigrate"
        seen.append(await session.status())
        fake.hang_up()
        seen.append(await session.status())
        return seen

    fake.status = "running"
    assert asyncio.run(statuses()) == [("running", 4242), ("incoming", 4242), ("unknown", 4242)]


def test_remove_plumbing_and_everything(rd):
    where = paths(rd.path, "vm1")
    for name in [*where.all_names(), ".vm1.runtime.json.tmp.x", "vm2.pid"]:
        rd.write_atomic(name, "x")
    session = session_on(rd)
    stop.remove_plumbing(session)
    assert not any(rd.exists(n) for n in ("vm1.qmp", "vm1.ro.qmp", "vm1.pid")) and rd.exists("vm1.runtime.json")
    stop.remove_all(session)
    assert rd.listdir() == ["vm1.lock", "vm2.pid"]
    assert asyncio.run(stop.stop(session, 0)) is False  # nothing runs: only the plumbing is cleared


# -- a start whose QEMU fails ------------------------------------------------------------------------------------------


def failing_qemu(tmp_path, message: str) -> str:
    script = tmp_path / "qemu-system-x86_64"
    script.write_text(f"#!/bin/sh\necho starting\necho {shlex.quote(message)} >&2\nexit 1\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("accel,message,reason", [
    ("tcg", "qemu-system-x86_64: -device x: Bus 'pci.9' not found", "QEMU failed to start: qemu-system-x86_64: -device x: Bus 'pci.9' not found"),
    ("kvm", "Could not access KVM kernel module: Permission denied",
     "QEMU failed to start: Could not access KVM kernel module: Permission denied (the QEMU user root needs /dev/kvm: the kvm_host role "
     "puts it in the kvm group; or use accel: tcg)"),
])
def test_a_failed_start_puts_everything_back(rd, tmp_path, accel, message, reason):
    rt = runtime([disk(1, images(tmp_path, 1))], [nic(1, network={"type": "user"})], accel=accel)
    rt["kvm_cmd"][0] = "/bin/sh"  # a runtime file never picks the program: the module's qemu_binary runs
    rd.write_atomic("vm1.pending.json", "[]")  # a journal from an earlier QEMU goes with it
    with pytest.raises(KvmError) as err:
        asyncio.run(start.start(session_on(rd), rt, process.resolve_user("root"), failing_qemu(tmp_path, message)))
    assert str(err.value) == reason
    assert rd.listdir() == []  # no runtime file, no sockets, no pid file, no logs it created


def test_a_failed_restart_keeps_the_previous_runtime_file_and_logs(rd, tmp_path):
    rt = runtime([disk(1, images(tmp_path, 1))], [], accel="tcg")
    before = runtime_file.dumps({**rt, "mark": "stopped"})
    rd.write_atomic("vm1.runtime.json", before)
    rd.write_atomic("vm1.qemu.log", "an old run\n")
    with pytest.raises(KvmError, match=r"^QEMU failed to start: boom$"):
        asyncio.run(start.start(session_on(rd), rt, process.resolve_user("root"), failing_qemu(tmp_path, "boom"),
                                incoming_uri="tcp:0:4444"))
    assert rd.read_text("vm1.runtime.json") == before
    assert rd.read_text("vm1.qemu.log") == "an old run\nstarting\nboom\n"
    assert sorted(rd.listdir()) == ["vm1.qemu.log", "vm1.runtime.json", "vm1.serial.log"]


def test_ready_tells_a_migration_target_to_listen(rd, monkeypatch):
    fake = FakeQemu()
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    asyncio.run(start._ready(session_on(rd), "unix:/m.sock", None))
    caps = {c["capability"]: c["state"] for c in start.MIGRATION_CAPS}
    assert fake.incoming == {"uri": "unix:/m.sock", "capabilities": caps, "parameters": {}}  # set before it listens
    assert {"capability": "return-path", "state": True} in start.MIGRATION_CAPS
    fake.log.clear()
    asyncio.run(start._ready(session_on(rd), None, None))
    assert fake.log == []


def test_a_qemu_left_without_a_pid_file_is_never_joined_by_a_second(rd, tmp_path):
    """A module killed between spawning QEMU and writing its pid file leaves a QEMU that still serves its socket."""
    orphan = rd.listen("vm1.qmp")  # what that QEMU holds
    try:
        assert stop.orphan_listens(session_on(rd))
        rt = runtime([disk(1, images(tmp_path, 1))], [], accel="tcg")
        with pytest.raises(KvmError, match="without a pid file still serves"):
            asyncio.run(start.start(session_on(rd), rt, process.resolve_user("root"), "/bin/false"))
        assert not rd.exists("vm1.runtime.json")
    finally:
        orphan.close()
    assert not stop.orphan_listens(session_on(rd))  # a stale socket file answers nobody


def test_a_target_whose_qemu_does_not_answer_or_just_went_keeps_its_mark(rd, monkeypatch):
    """Only a QEMU that says it left inmigrate proves the guest arrived. A target QEMU ends when its incoming
    migration fails: while it goes, QMP no longer answers (unknown), then the process is gone. Dropping the mark
    then would make the next state=running "recover" a second copy of a guest that still runs on the source."""
    marked = {**runtime([], []), "mark": "incoming"}
    runtime_file.save(rd, "vm1", marked)
    fake = FakeQemu()
    monkeypatch.setattr(qmp, "open_monitor", connect_to(fake))
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: 4242)
    fake.hang_up()  # QEMU is going: QMP does not answer
    with pytest.raises(KvmError, match="does not answer QMP"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert runtime_file.load(rd, "vm1")[0].get("mark") == "incoming"
    monkeypatch.setattr(process, "running_pid", lambda _found, _pidfile: None)  # and now it is gone
    with pytest.raises(KvmError, match="migration never completed"):
        asyncio.run(target.settle_incoming(session_on(rd), dict(marked), 4242))
    assert runtime_file.load(rd, "vm1")[0].get("mark") == "incoming"
