# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bus allocator: which PCI slot, SCSI target or IDE unit a new device gets.

The bus state is always computed from the devices recorded in the runtime
file, never from QEMU, so an allocation is a pure function of that file:
lowest free address first, holes left by unplugs are filled, and an address
in use is never handed out twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError


@dataclass
class BusState:
    """Addresses taken by the instance's disks and NICs, and their ids."""

    pci: set[int] = field(default_factory=set)
    scsi: set[int] = field(default_factory=set)
    ide: set[tuple[str, int]] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)

    @classmethod
    def from_devices(cls, devices: Iterable[dict[str, Any]]) -> BusState:
        state = cls()
        for dev in devices:
            if dev.get("hvinfo"):
                state.take(dev["hvinfo"])
        return state

    def take(self, info: dict[str, Any]) -> None:
        """Mark ``info``'s address and id used; a second claim is an error."""
        dev_id = info["id"]
        if dev_id in self.ids:
            raise KvmError(f"device id {dev_id} is used twice in the runtime")
        if hvi.is_pci(info):
            addr, used = hvi.pci_slot(info), self.pci
        elif hvi.is_scsi(info):
            addr, used = info["scsi-id"], self.scsi
        elif "unit" in info:
            addr, used = (info["bus"], info["unit"]), self.ide
        else:
            addr, used = None, None
        if used is not None:
            if addr in used:
                raise KvmError(f"device {dev_id}: address {addr} on {info['bus']} is already taken")
            used.add(addr)
        self.ids.add(dev_id)


def pci_window(hvparams: dict[str, Any]) -> range:
    return range(hvparams["kvm_pci_reservations"], hvp.PCI_LAST_SLOT + 1)


def scsi_window(hvparams: dict[str, Any]) -> range:
    return range(0, hvp.scsi_controller(hvparams)[1] + 1)


def free_pci_slot(state: BusState, hvparams: dict[str, Any]) -> int:
    window = pci_window(hvparams)
    for slot in window:
        if slot not in state.pci:
            return slot
    first = f"{window.start:#04x}" if window else "none"
    raise KvmError(
        f"PCI window full: {hvp.PCI_BUS} slots {first}-{hvp.PCI_LAST_SLOT:#04x} ({len(window)} slots, "
        f"kvm_pci_reservations={hvparams['kvm_pci_reservations']}) are all taken; lower "
        "kvm_pci_reservations (takes effect at the next start) or use a SCSI disk_type"
    )


def free_scsi_target(state: BusState, hvparams: dict[str, Any]) -> int:
    window = scsi_window(hvparams)
    for target in window:
        if target not in state.scsi:
            return target
    kind = hvparams["scsi_controller_type"]
    bigger = [f"{name} ({limit + 1} targets)" for name, (_driver, limit) in hvp.SCSI_CONTROLLERS.items() if limit > window.stop - 1]
    way_out = f"set scsi_controller_type to {' or '.join(bigger)} (takes effect at the next start)" if bigger else "start another instance"
    raise KvmError(
        f"SCSI controller full: {kind} ({hvp.scsi_controller(hvparams)[0]}) on {hvp.SCSI_BUS} takes "
        f"{len(window)} targets (scsi-id 0-{window.stop - 1}) and all are used; {way_out}"
    )


def free_ide_unit(state: BusState) -> tuple[str, int]:
    for bus, unit in hvp.IDE_SLOTS:
        if (bus, unit) not in state.ide:
            return bus, unit
    raise KvmError("IDE buses full: ide.0 and ide.1 take 2 disks each (4 in all); use another disk_type")


def place_disk(state: BusState, hvparams: dict[str, Any], uuid: str) -> dict[str, Any]:
    """hvinfo for a new disk of the instance's ``disk_type``; marks it used."""
    dev_id = hvi.make_id("disk", uuid, state.ids)
    driver = hvp.disk_driver(hvparams)
    if hvp.is_scsi(hvparams):
        info = hvi.scsi_hvinfo(driver, dev_id, hvp.SCSI_BUS, free_scsi_target(state, hvparams))
    elif hvparams["disk_type"] == "ide":
        info = hvi.ide_hvinfo(driver, dev_id, *free_ide_unit(state))
    else:
        info = hvi.pci_hvinfo(driver, dev_id, hvp.PCI_BUS, free_pci_slot(state, hvparams))
    state.take(info)
    return info


def place_nic(state: BusState, hvparams: dict[str, Any], uuid: str) -> dict[str, Any]:
    """hvinfo for a new NIC (always on pci.0); marks it used."""
    dev_id = hvi.make_id("nic", uuid, state.ids)
    info = hvi.pci_hvinfo(hvp.nic_driver(hvparams), dev_id, hvp.PCI_BUS, free_pci_slot(state, hvparams))
    state.take(info)
    return info


def assign(disks: list[dict[str, Any]], nics: list[dict[str, Any]], hvparams: dict[str, Any]) -> BusState:
    """Give every device without hvinfo one: disks first in index order, then NICs.

    Devices that already carry hvinfo keep it and are seeded first, so new
    devices fill the holes around them. Mutates the device dicts.
    """
    state = BusState.from_devices([*disks, *nics])
    for disk in disks:
        if not disk.get("hvinfo"):
            disk["hvinfo"] = place_disk(state, hvparams, disk["uuid"])
    for nic in nics:
        if not nic.get("hvinfo"):
            nic["hvinfo"] = place_nic(state, hvparams, nic["uuid"])
    return state


def describe(state: BusState, hvparams: dict[str, Any]) -> dict[str, Any]:
    """The bus state as ``kvm_instance_info`` reports it."""
    window = pci_window(hvparams)
    report: dict[str, Any] = {
        "pci": {
            "bus": hvp.PCI_BUS,
            "window": [f"{window.start:#04x}", f"{hvp.PCI_LAST_SLOT:#04x}"],
            "used": [f"{s:#04x}" for s in sorted(state.pci)],
            "free": [f"{s:#04x}" for s in window if s not in state.pci],
        }
    }
    if hvp.is_scsi(hvparams):
        driver, limit = hvp.scsi_controller(hvparams)
        report["scsi"] = {
            "bus": hvp.SCSI_BUS,
            "controller": hvparams["scsi_controller_type"],
            "driver": driver,
            "max_targets": limit + 1,
            "used": sorted(state.scsi),
            "free": len([t for t in range(limit + 1) if t not in state.scsi]),
        }
    return report
