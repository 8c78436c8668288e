# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``kvm_instance_info`` reports: the runtime, the bus state, liveness and
drift between the runtime file and what QEMU really has."""

from __future__ import annotations

import os
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import process
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import runtime_file as runtime
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.upgrade import FORMAT_VERSION


async def _drift(sock: str, rt: dict[str, Any]) -> list[str]:
    """Differences between QEMU's device tree and the runtime file (one connection, two queries)."""
    async with qmp.connect(sock) as mon:
        pci = qmp.pci_devices(await mon.cmd("query-pci"))
        blocks = await mon.cmd("query-block")
    problems: list[str] = []
    known_slots: set[int] = set()
    for kind in ("disks", "nics"):
        for dev in rt[kind]:
            info = dev["hvinfo"]
            if hvinfo.is_pci(info):
                slot = hvinfo.pci_slot(info)
                known_slots.add(slot)  # type: ignore[arg-type]
                found = pci.get(slot)  # type: ignore[arg-type]
                if found is None:
                    problems.append(f"{info['id']}: runtime has it at {hvparams.PCI_BUS} slot {info['addr']}, QEMU has nothing there")
                elif found.get("qdev_id") != info["id"]:
                    problems.append(f"{info['id']}: QEMU has {found.get('qdev_id') or 'another device'} at slot {info['addr']}")
            elif kind == "disks" and qmp.block_for_device(blocks, info["id"]) is None:
                problems.append(f"{info['id']}: runtime has it on {info['bus']}, QEMU has no such disk")
    window = allocator.pci_window(rt["hvparams"])
    for slot, dev in sorted(pci.items()):
        if slot in window and slot not in known_slots:
            problems.append(f"QEMU has {dev.get('qdev_id') or 'a device'} at {hvparams.PCI_BUS} slot {slot:#04x}, missing from the runtime")
    disk_ids = {d["hvinfo"]["id"] for d in rt["disks"]}
    for block in blocks:
        qdev = block.get("qdev") or ""
        dev_id = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev
        if dev_id and not dev_id.startswith("/") and dev_id not in disk_ids:
            problems.append(f"QEMU has disk {dev_id}, missing from the runtime")
    return problems


def describe(path: str, rt: dict[str, Any], version: int, where: runtime.Paths | None) -> dict[str, Any]:
    """One instance as the module returns it."""
    pid = process.running_pid(where) if where else None
    report: dict[str, Any] = {
        "name": rt.get("name") or (where.name if where else None),
        "runtime_file": path,
        "format_version": version,
        "current_version": FORMAT_VERSION,
        "runtime": rt,
        "bus": allocator.describe(runtime.bus_state(rt), rt["hvparams"]),
        "alive": pid is not None,
        "pid": pid,
        "qmp_socket": where.qmp if where else None,
        "drift": [],
    }
    if pid is not None and where is not None and os.path.exists(where.qmp):
        report["drift"] = qmp.run(_drift(where.qmp, rt))
    return report


def paths_for_file(path: str, rt: dict[str, Any]) -> runtime.Paths | None:
    """The instance files that sit next to a runtime file, if it follows our naming."""
    base = os.path.basename(path)
    if base.endswith(runtime.SUFFIX) and runtime.NAME_RE.match(base[: -len(runtime.SUFFIX)]):
        return runtime.Paths(os.path.dirname(os.path.abspath(path)), base[: -len(runtime.SUFFIX)])
    return None
