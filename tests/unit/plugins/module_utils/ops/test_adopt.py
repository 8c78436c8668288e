"""Adoption without QEMU: the comparison with the live answers, the hotplug window, and how an adopted
instance's socket and pid file are found and opened (never through a symlink, never another user's)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import adopt
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session, locate
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process, qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

FIXTURES = Path(__file__).parents[1] / "store" / "ganeti" / "fixtures"
LINK0 = "/var/run/ganeti/instance-disks/vm1.example.org:0"
NIC_ID = "hotnic-1a2b3c4d-pci-6"


def record() -> dict:
    """A 2.9 VM hotplugged under 2.15: a placed NIC and -drive disk, a NIC at pci 6."""
    return dict(upgrade.upgrade(json.loads((FIXTURES / "v2_15_resaved_from_2_9.json").read_text()))[0])


def live() -> dict:
    """What that QEMU answers (slots as QEMU 7.2 places them: balloon 3, NIC 4, the -drive disk 5)."""
    slots = [{"slot": s, "function": 0, "qdev_id": ""} for s in (0, 1, 2, 3, 4, 5)] + [{"slot": 6, "function": 0, "qdev_id": NIC_ID}]
    return {
        "query-name": {"name": "vm1.example.org"},
        "query-uuid": {"UUID": "0f7b3c1e-2a44-4d0b-8f3e-6c1d2b3a4f50"},
        "query-memory-size-summary": {"base-memory": 2048 << 20},
        "query-cpus-fast": [{"cpu-index": 0}, {"cpu-index": 1}],
        "query-pci": [{"bus": 0, "devices": slots}],
        "query-block": [{"device": "virtio0", "qdev": "/machine/peripheral-anon/device[1]/virtio-backend", "removable": False,
                         "inserted": {"file": LINK0}},
                        {"device": "ide1-cd0", "qdev": "/machine/unattached/device[23]", "removable": True}],
        "query-fdsets": [],
        "present": {NIC_ID: "virtio-net-pci"},
        "placed": {NIC_ID: {"bus": "pci.0", "addr": 6 << 3}},
        "anon_nics": [("virtio-net-pci", "aa:00:01:00:00:0a")],
    }


def test_a_matching_qemu_has_no_differences_and_the_window_moves_above_qemus_devices():
    rt, answers = record(), live()
    assert adopt.compare(rt, 4242, answers) == []
    assert adopt._window(rt, answers) == (12, 6)  # the file predates kvm_pci_reservations: pack after QEMU's devices
    rt["ganeti"]["reservations_default"] = False
    assert adopt._window(rt, answers) == (12, 12)  # Ganeti's own window is kept when nothing of QEMU's is in it


@pytest.mark.parametrize("mutate,expected", [
    (lambda rt, a: a.update({"query-name": {"name": "vm2"}}), "QEMU is named 'vm2', the runtime says 'vm1.example.org'"),
    (lambda rt, a: a.update({"query-uuid": {"UUID": "00000000-0000-0000-0000-000000000000"}}), "QEMU has uuid 00000000"),
    (lambda rt, a: a.update({"query-memory-size-summary": {"base-memory": 1024 << 20}}), "QEMU has 1024 MiB of memory"),
    (lambda rt, a: a.update({"query-cpus-fast": [{}]}), "QEMU has 1 vcpus, the runtime says 2"),
    (lambda rt, a: a["placed"][NIC_ID].update({"addr": 7 << 3}), f"{NIC_ID}: runtime has it at pci.0 slot 0x6, QEMU has it at slot 0x07"),
    (lambda rt, a: a.update({"present": {}}), f"{NIC_ID}: runtime has it at pci.0 slot 0x6, QEMU has no such device"),
    (lambda rt, a: a["present"].update({"nic-x": "e1000"}), "QEMU has e1000 nic-x"),
    (lambda rt, a: a.update({"anon_nics": []}), "nic aa:00:01:00:00:0a (virtio-net-pci, placed by QEMU): QEMU has no such NIC"),
    (lambda rt, a: a["anon_nics"].append(("e1000", "52:54:00:00:00:99")), "QEMU has e1000 52:54:00:00:00:99 without an id"),
    (lambda rt, a: a["query-block"].pop(0), f"disk {LINK0} (placed by QEMU): QEMU has no disk backed by it"),
    (lambda rt, a: a["query-block"].append({"device": "virtio1", "qdev": "/machine/peripheral-anon/device[9]", "removable": False,
                                            "inserted": {"file": "/srv/other.img"}}), "QEMU has disk /srv/other.img (virtio1)"),
])
def test_every_difference_is_named(mutate, expected):
    rt, answers = record(), live()
    mutate(rt, answers)
    problems = adopt.compare(rt, 4242, answers)
    assert any(expected in p for p in problems), problems


def test_adopt_options_are_checked_before_anything_is_touched():
    base = {"name": "vm1", "state": "running", "disks": [], "nics": [], "hvparams": {},
            "adopt": {"runtime": "/r", "qmp": "/q", "pidfile": "/p"}}
    assert adopt._spec(base) == {"runtime": "/r", "qmp": "/q", "pidfile": "/p"}
    for change, message in [({"state": "stopped"}, "use it with state=running"), ({"disks": [{"path": "/x"}]}, "leave out disks"),
                            ({"adopt": {"runtime": "r", "qmp": "/q", "pidfile": "/p"}}, "adopt.runtime 'r' must be an absolute path")]:
        with pytest.raises(KvmError, match=message):
            adopt._spec({**base, **change})


@pytest.fixture
def rundir(tmp_path):
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    with RunDir.open(str(path)) as rd:
        yield rd


def test_locate_is_the_one_place_that_picks_an_adopted_qemus_socket_and_pid_file(rundir):
    where = paths(rundir.path, "vm1")
    assert locate(where, None) == where.own()  # no runtime file yet
    rt = record()
    assert locate(where, rt) == where.own()
    rt["adopted"] = {"runtime": "/g/conf/vm1.runtime", "qmp": "/g/ctrl/vm1.qmp", "pidfile": "/g/pid/vm1"}
    found = locate(where, rt)
    assert (found.qmp, found.qmp_ro, found.pidfile, found.adopted) == ("/g/ctrl/vm1.qmp", "/g/ctrl/vm1.qmp", "/g/pid/vm1", True)
    assert found.runtime == where.runtime and found.own() == where
    assert Session(Call({}), rundir, found, writer=False).query_socket() == "/g/ctrl/vm1.qmp"  # one monitor only


def test_an_adopted_pid_file_is_read_without_following_a_symlink(tmp_path, rundir):
    pidfile = tmp_path / "pid"
    pidfile.write_text(f"{os.getpid()}\n")
    os.chmod(pidfile, 0o644)
    where = paths(rundir.path, "vm1")
    adopted = Session(Call({}), rundir, type(where)(where.runtime_dir, where.name, str(tmp_path / "qmp"), str(pidfile)), True)
    assert adopted.pid_record() == (os.getpid(), None)
    assert adopted.pid() is None  # this process does not name the pid file on its command line
    os.chmod(pidfile, 0o666)
    with pytest.raises(KvmError, match="refusing to trust it"):
        adopted.pid_record()
    link = tmp_path / "link"
    link.symlink_to(pidfile)
    with pytest.raises(KvmError, match="is a symlink; refusing to follow it"):
        process.read_outside(str(link))
    assert process.read_outside(str(tmp_path / "missing")) is None


def test_qmp_connects_to_the_socket_it_checked_never_through_a_symlink(tmp_path):
    sock_path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen()
    link = tmp_path / "link.sock"
    link.symlink_to(sock_path)
    plain = tmp_path / "file"
    plain.write_text("")

    async def attempt(path: str) -> None:
        async with qmp.connect(str(path), timeout=0.5):
            pass

    for path, message in [(link, "is a symlink; refusing to follow it"), (plain, "is not a socket"),
                          (tmp_path / "nothing", "No such file or directory")]:
        with pytest.raises(KvmError, match=message):
            asyncio.run(attempt(str(path)))
    with pytest.raises(KvmError, match="timed out"):  # reached the real socket (nobody answers the greeting here)
        asyncio.run(attempt(str(sock_path)))
    server.close()


def test_an_adopted_qemu_is_known_by_its_start_time_too(tmp_path, rundir):
    """The start time recorded at adoption decides, so a pid reused after an unclean death is never that QEMU."""
    pidfile = tmp_path / "pid"
    pidfile.write_text(f"{os.getpid()}\n")
    os.chmod(pidfile, 0o644)
    rt = record()
    rt["adopted"] = {"runtime": "/g/conf/vm1.runtime", "qmp": str(tmp_path / "qmp"), "pidfile": str(pidfile),
                     "started": process.starttime(os.getpid())}
    where = locate(paths(rundir.path, "vm1"), rt)
    assert Session(Call({}), rundir, where, True).pid() == os.getpid()  # the start time matches: no command-line check needed
    rt["adopted"]["started"] = 1  # another process's start time: the pid was reused
    assert Session(Call({}), rundir, locate(paths(rundir.path, "vm1"), rt), True).pid() is None
