"""Starting QEMU without a real one: the illustrative command line, the public view, a start whose QEMU (a script
started here) fails, a migration target told to listen, and a QEMU left without a pid file."""

from __future__ import annotations

import asyncio
import json
import shlex

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import start, stop
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import argv, process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import paths

from ....builders import disk, images, nic, runtime, session_on
from ....fakes.qemu import FakeQemu, connect_to


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
