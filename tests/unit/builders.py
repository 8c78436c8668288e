"""Builders of the records and runtimes the unit tests share (no test module imports another one).

- ``INST``, ``uuid(n)``, ``disk(n)``, ``nic(n)``: device records of instance ``vm1`` with readable uuids
  (NICs count from 0x100); ``images(tmp_path, n, ...)`` creates the ``d<n>.img`` files ``disk(n, directory)`` names.
- ``runtime(disks, nics, **hvparams)``: a current-format runtime as read back from its file (4 hotplug slots).
- ``make_runtime(disk_type)``: a runtime as ``construct.new_runtime`` builds it (two disks, one NIC, derived uuids).
- ``LEGACY``: a Ganeti-era runtime in the legacy layout (three PCI devices).
- ``load_runtime(fake, rt)``: the fake QEMU holds what ``rt`` records, as after a start.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops import engine
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.engine import Item
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.session import Session
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct, upgrade
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import RunDir, paths

from .fakes.qemu import FakeQemu

INST = "00000000-0000-4000-8000-000000000000"


def uuid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def disk(n: int, directory: str = "/srv", **spec: Any) -> dict[str, Any]:
    return devices.disk_record({"path": f"{directory}/d{n}.img", "uuid": uuid(n), **spec}, INST)


def nic(n: int, **spec: Any) -> dict[str, Any]:
    return devices.nic_record({"uuid": uuid(0x100 + n), **spec}, INST)


def runtime(disks: list[dict], nics: list[dict], **hv: Any) -> dict[str, Any]:
    hv = hvparams.normalize({"pci_hotplug_slots": 4, "accel": "tcg", **hv})
    rt = construct.new_runtime("vm1", INST, 256, 1, hv, "qemu", [dict(d) for d in disks], [dict(n) for n in nics])
    return dict(upgrade.upgrade(json.loads(json.dumps(rt)))[0])  # as read back from the file


def images(tmp_path: Path, *numbers: int) -> str:
    for n in numbers:
        (tmp_path / f"d{n}.img").write_bytes(b"\0" * 4096)
    return str(tmp_path)


NIC_UUID = "11111111-2222-4333-8444-555555555555"
DISK0 = "aaaaaaaa-2222-4333-8444-555555555555"
DISK1 = "bbbbbbbb-2222-4333-8444-555555555555"
LEGACY = [
    ["qemu-system-x86_64", "-name", "old1", "-m", "128", "-smp", "2", "-pidfile", "/run/ganeti/old1.pid",
     "-qmp", "unix:/run/ganeti/old1.qmp,server,nowait", "-daemonize", "-machine", "pc,accel=tcg"],
    [{"mac": "52:54:00:00:00:01", "uuid": NIC_UUID, "pci": 18}],
    {"disk_type": "paravirtual", "nic_type": "e1000", "security_model": "none"},
    [[{"uuid": DISK0, "mode": "rw", "pci": 16}, "/srv/old1-0.img", None],
     [{"uuid": DISK1, "mode": "ro", "pci": 17}, "/srv/old1-1.img", "rbd:pool/x"]],
]


def make_runtime(disk_type: str = "paravirtual") -> dict:
    hv = hvparams.normalize({"disk_type": disk_type, "accel": "tcg"})
    inst = devices.derived_uuid("instance", "vm1")
    disks = [devices.disk_record({"path": f"/srv/d{i}.img"}, inst) for i in range(2)]
    nics = [devices.nic_record({}, inst, 0)]
    return dict(construct.new_runtime("vm1", inst, 256, 1, hv, "qemu-system-x86_64", disks, nics))


def load_runtime(fake: FakeQemu, rt: dict[str, Any]) -> None:
    """Make ``fake`` hold everything ``rt`` records, as a start would (for the tests of the operations above the engine)."""
    items = [Item("controllers", c) for c in rt.get("controllers", []) if c["kind"] != "scsi"]
    items += [Item("controllers", c) for c in rt.get("controllers", []) if c["kind"] == "scsi"]
    items += [Item("disks", d) for d in rt["disks"]] + [Item("nics", n) for n in rt["nics"]]
    asyncio.run(engine.plug(qmp.Monitor(fake), items, rt["hvparams"], 1.0))
    fake.log.clear()


def session_on(rd: RunDir, check: bool = False) -> Session:
    """The session of instance vm1 in ``rd``: a writer, or a reader in check mode."""
    return Session(Call({}, check=check), rd, paths(rd.path, "vm1"), writer=not check)
