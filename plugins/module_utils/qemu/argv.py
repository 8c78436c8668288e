# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU command line, built as an argv list (never a shell string).

It has three parts so that migration can rebuild it on another host:
``kvm_cmd`` (fixed: machine, memory, cpus, kernel) and ``kvm_extra`` are
recorded in the runtime file; the devices come from the recorded records
(their hvinfo); the host plumbing (sandbox, QMP monitors, serial log,
``-incoming``) is added at launch for this host.

QEMU opens nothing by name that the module can open for it: the monitors
are listening sockets, the serial log, disks and taps are descriptors
(``fd=N``, ``-add-fd`` fdsets), so QEMU can run as an unprivileged user
without access to the runtime directory or the disk images. Devices,
block nodes and netdevs are given as JSON, which QEMU parses with the same
types as QMP: no value needs escaping and no value can add a property.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices as devs
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import fixed
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

# seccomp: no obsolete syscalls, no set*id, no fork/exec, no scheduler or
# resource changes. QEMU needs none of them: it is handed everything.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
SERIAL_FDSET = 1
FIRST_DISK_FDSET = 2


@dataclass
class HostFds:
    """Descriptors the module opened for one start, by what they are for."""

    qmp: int
    qmp_ro: int
    serial: int
    disks: dict[str, tuple[int, bool]] = field(default_factory=dict)  # device id -> (fd, is a block device)
    taps: dict[str, int] = field(default_factory=dict)  # device id -> fd

    def all(self) -> list[int]:
        return [self.qmp, self.qmp_ro, self.serial, *(fd for fd, _blk in self.disks.values()), *self.taps.values()]


def to_json(args: Mapping[str, Any]) -> str:
    return json.dumps(args, separators=(",", ":"))


def plumbing_argv(fds: HostFds, incoming: bool = False, serial: bool = True) -> list[str]:
    """Host-local options: sandbox, two QMP monitors, the serial log (unless ``serial`` is off), ``-incoming defer``."""
    argv = [
        "-sandbox", SANDBOX,
        "-chardev", f"socket,id=qmp,fd={fds.qmp},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-chardev", f"socket,id=qmp-ro,fd={fds.qmp_ro},server=on,wait=off",
        "-mon", "chardev=qmp-ro,mode=control",
    ]
    if serial:
        argv += [
            "-add-fd", f"fd={fds.serial},set={SERIAL_FDSET},opaque=serial",
            "-chardev", f"file,id=serial0,path=/dev/fdset/{SERIAL_FDSET}",
            "-serial", "chardev:serial0",
        ]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


def controller_argv(runtime: Runtime) -> list[str]:
    """Bridges and root ports first (the buses must exist), then SCSI controllers, each in recorded order.

    A controller ``kvm_cmd`` creates itself (a Ganeti runtime keeps its SCSI
    controller there, where QEMU placed it) is not added a second time.
    """
    ordered = [c for c in runtime.get("controllers", []) if c["kind"] != "scsi"]
    ordered += [c for c in runtime.get("controllers", []) if c["kind"] == "scsi"]
    argv: list[str] = []
    in_kvm_cmd = fixed.kvm_cmd_ids(runtime)
    for ctl in ordered:
        if ctl["hvinfo"]["id"] not in in_kvm_cmd:
            argv += ["-device", to_json(hvi.device_args(ctl["hvinfo"]))]
    return argv


def device_argv(runtime: Runtime, fds: HostFds) -> list[str]:
    """Per disk its fdset (a host file), block node and ``-device``; per NIC a ``-netdev`` and a ``-device``."""
    argv: list[str] = []
    fdset = FIRST_DISK_FDSET
    for disk in runtime["disks"]:
        record = dict(disk)
        dev_id = disk["hvinfo"]["id"]
        if record.get("path"):
            fd, block_device = fds.disks[dev_id]
            argv += ["-add-fd", f"fd={fd},set={fdset},opaque={hvi.escape(dev_id)}"]
            argv += ["-blockdev", to_json(devs.blockdev_args(record, f"/dev/fdset/{fdset}", block_device))]
            fdset += 1
        elif record.get("uri"):
            argv += ["-blockdev", to_json(devs.blockdev_args(record, None))]
        argv += ["-device", to_json(hvi.device_args(disk["hvinfo"], **devs.disk_device_extra(record)))]
    for nic in runtime["nics"]:
        dev_id = nic["hvinfo"]["id"]
        netdev = devs.netdev_args(dict(nic), str(fds.taps[dev_id]) if dev_id in fds.taps else None)
        if netdev:
            argv += ["-netdev", to_json(netdev)]
        argv += ["-device", to_json(hvi.device_args(nic["hvinfo"], **devs.nic_device_extra(dict(nic))))]
    return argv


def launch_argv(runtime: Runtime, fds: HostFds, incoming: bool = False) -> list[str]:
    """The full argv for ``runtime`` on this host: fixed, plumbing, devices, extras last.

    Devices QEMU placed itself (``runtime["fixed"]``, read from Ganeti) are
    put where ``qemu.fixed`` says, so QEMU places them the same way again.
    """
    head, tail = fixed.render(runtime, fds, FIRST_DISK_FDSET + sum(1 for disk in runtime["disks"] if disk.get("path")))
    return [*head, *plumbing_argv(fds, incoming, serial=fixed.has_serial(runtime)), *controller_argv(runtime),
            *device_argv(runtime, fds), *tail,
            *runtime.get("kvm_extra", [])]
