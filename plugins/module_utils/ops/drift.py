# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift: what QEMU has against what the runtime records, both ways.

For each device the runtime records: whether QEMU has it, with the same
driver, at the same address, backed by the same file (the descriptor QEMU
holds is compared with the recorded path by device and inode); and every
disk or NIC QEMU has that the runtime does not record, and whatever sits
unrecorded in the hotplug window. ``kvm_instance_info`` reports it;
adoption refuses a QEMU with any.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp, query
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import construct
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DISKS, KINDS, DeviceKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

DEVICE_DRIVERS = hvp.PCI_DEVICE_DRIVERS | hvp.SCSI_DEVICE_DRIVERS | hvp.IDE_DEVICE_DRIVERS


def same_file(a: str, b: str) -> bool | None:
    """Whether two paths are the same file (device and inode); None if either cannot be read."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return None
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _backing(block: Mapping[str, Any], pid: int, fdsets: dict[int, list[int]]) -> str | None:
    """A path naming the file QEMU really uses for a disk (its descriptor in /proc), if known."""
    name = (block.get("inserted") or {}).get("file") or ""
    if name.startswith("/dev/fdset/"):
        fds = fdsets.get(int(name.rsplit("/", 1)[1]), [])
        return f"/proc/{pid}/fd/{fds[0]}" if fds else None
    return name or None


def placement_questions(present: dict[str, str]) -> list[tuple[str, str, str]]:
    """(device id, property, qom path) to ask for every device QEMU has: its bus and its address."""
    asks = []
    for dev_id, kind in present.items():
        path = f"{query.PERIPHERAL}{dev_id}"
        asks.append((dev_id, "parent_bus", path))
        family = hvi.driver_kind(kind)
        if family == "scsi":
            asks.append((dev_id, "scsi-id", path))
        elif family in ("pci", "controller", "pci-bridge", "pcie-root-port") or kind in DEVICE_DRIVERS:
            asks.append((dev_id, "addr", path))
    return asks


def compare(rt: Runtime, pid: int, present: dict[str, str], placed: dict[str, dict[str, Any]],
            root_slots: dict[int, dict[str, Any]], blocks: dict[str, Mapping[str, Any]], fdsets: dict[int, list[int]]) -> list[str]:
    """Differences between QEMU's answers and the runtime, both ways (pure but for the file identity check).

    ``placed`` is device id -> {"bus": name, "addr": devfn, "scsi-id": n} as QEMU reports it.
    """
    problems: list[str] = []
    recorded: set[str] = set()
    known_slots: set[int] = set()
    root = hvp.root_bus(rt["hvparams"])
    placed_devices: list[tuple[DeviceKind | None, Mapping[str, Any]]] = [(None, ctl) for ctl in rt.get("controllers", [])]
    placed_devices += [(kind, dev) for kind in KINDS for dev in kind.records(rt)]
    for device_kind, dev in placed_devices:
        info = dev["hvinfo"]
        dev_id = info["id"]
        recorded.add(dev_id)
        if dev_id not in present:
            problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has no such device")
            continue
        got = placed.get(dev_id, {})
        if got.get("bus") == root and isinstance(got.get("addr"), int):
            known_slots.add(got["addr"] >> 3)
        if present[dev_id] != info["driver"]:
            problems.append(f"{dev_id}: runtime says driver {info['driver']}, QEMU has {present[dev_id]}")
        if got.get("bus") != info["bus"]:
            problems.append(f"{dev_id}: runtime has it on bus {info['bus']}, QEMU has it on {got.get('bus')}")
        elif (pci := hvi.pci_addr(info)) is not None and isinstance(got.get("addr"), int):
            if got["addr"] != pci.devfn:
                problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has it at slot "
                                f"{got['addr'] >> 3:#04x}.{got['addr'] & 7}")
        elif hvi.is_scsi(info) and got.get("scsi-id") != info["scsi-id"]:
            problems.append(f"{dev_id}: runtime has it at {hvi.where(info)}, QEMU has it at scsi-id {got.get('scsi-id')}")
        if device_kind is DISKS and dev.get("path"):
            block = blocks.get(dev_id)
            if block is None:
                problems.append(f"{dev_id}: QEMU has no disk attached to it")
                continue
            backing = _backing(block, pid, fdsets)
            same = same_file(backing, dev["path"]) if backing else None
            if same is False:
                real = os.path.realpath(backing) if backing else "?"
                problems.append(f"{dev_id}: QEMU's disk is {real}, the runtime says {dev['path']}")
    reported: set[str] = set()
    for dev_id, kind in sorted(present.items()):
        if dev_id not in recorded and (kind in DEVICE_DRIVERS or hvi.driver_kind(kind) is not None):
            got = placed.get(dev_id, {})
            at = f" at {got['bus']} slot {got['addr'] >> 3:#04x}" if isinstance(got.get("addr"), int) else \
                f" at {got.get('bus')} scsi-id {got['scsi-id']}" if "scsi-id" in got else ""
            problems.append(f"QEMU has {kind} {dev_id}{at}, missing from the runtime")
            reported.add(dev_id)
    return problems + _window_drift(rt, root_slots, known_slots, present, reported | recorded)


def _window_drift(rt: Runtime, root_slots: dict[int, dict[str, Any]], known_slots: set[int], present: dict[str, str],
                  skip: set[str]) -> list[str]:
    """Whatever sits in the hotplug window unrecorded, named or not, of any kind: a named device of a kind
    this collection does not know takes the slot too (a hotplug there fails with a drift hint)."""
    root = hvp.root_bus(rt["hvparams"])
    window = construct.bus_state(rt).window()
    problems = []
    for slot, dev in sorted(root_slots.items()):
        qdev = dev.get("qdev_id") or ""
        if slot in window and slot not in known_slots and qdev not in skip:
            what = f"{present[qdev]} {qdev}" if qdev in present else qdev or "a device"
            problems.append(f"QEMU has {what} at {root} slot {slot:#04x}, missing from the runtime")
    return problems


async def drift(mon: qmp.Monitor, rt: Runtime, pid: int) -> list[str]:
    """Ask QEMU (four queries, then every device's bus and address, pipelined) and compare."""
    answers = await mon.batch([("qom-list", {"path": query.PERIPHERAL.rstrip("/")}), ("query-pci", None),
                               ("query-block", None), ("query-fdsets", None)])
    for answer in answers:
        if isinstance(answer, KvmError):
            raise answer.with_step("drift")
    present = query.peripherals(answers[0])
    asks = placement_questions(present)
    got = await mon.batch([("qom-get", {"path": path, "property": prop}) for _i, prop, path in asks]) if asks else []
    placed: dict[str, dict[str, Any]] = {}
    for (dev_id, prop, _path), value in zip(asks, got, strict=True):
        if not isinstance(value, KvmError):
            placed.setdefault(dev_id, {})["bus" if prop == "parent_bus" else prop] = query.bus_name(value) if prop == "parent_bus" else value
    return compare(rt, pid, present, placed, query.pci_devices(answers[1]), query.blocks_by_device(answers[2]),
                   query.fdset_fds(answers[3]))
