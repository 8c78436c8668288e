# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bus allocator: where a new device goes, on every bus the instance has.

The bus state is computed from the runtime file alone (its controllers and
devices), never from QEMU, so an allocation is a pure function of that file:
lowest free address first, holes left by unplugs are filled, an address in
use is never handed out twice.

PCI leaves (virtio disks, NICs, SCSI controllers) are placed in one order:

* ``pc``: the free slots of ``pci.0``'s window (from ``kvm_pci_reservations``
  up to 0x1f, lowest first), then slots 1-31 of each ``pci-bridge``. Bridges
  take the top slots of the window (0x1f, 0x1e, ...), so small instances keep
  their devices at 0x10 upwards.
* ``q35``: every device has a ``pcie-root-port`` of its own (native PCIe
  hotplug needs one port per device); ports are packed eight to a slot of
  ``pcie.0`` as functions of a multifunction device, from the window's first
  slot upwards, and a device takes the first free port.

Bridges and ports exist from the start: ``pci_hotplug_slots`` says how many
PCI leaves must still be free after the cold-plugged devices took theirs,
and ``plan`` adds the bridges or ports that needs. SCSI disks take the
lowest free target of the first SCSI controller with room (``scsi`` on bus
``scsi.0``, then ``scsi1`` on ``scsi1.0``, ...); a new controller is planned
when all are full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, TypeAlias, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import BusReport
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Controller, DiskRecord, HvInfo, NicRecord

BRIDGE_SLOTS = range(1, 32)  # 31 slots: slot 0 of a pci-bridge is left alone (SHPC cannot hotplug it)
BRIDGE_RESERVE = 2 << 20
PORTS_PER_SLOT = 8
BRIDGE_KIND, PORT_KIND, SCSI_KIND = "pci-bridge", "pcie-root-port", "scsi"
# What a device takes on its bus: a PCI address, a whole PCI slot (slot, None),
# a SCSI target or an IDE unit.
Taken: TypeAlias = "tuple[int, int | None] | int"


def disk_type(disk: Mapping[str, Any], hvparams: Mapping[str, Any]) -> str:
    """A disk's own type, or the instance's ``disk_type``."""
    return str(disk.get("type") or hvparams["disk_type"])


def scsi_bus_of(controller_id: str) -> str:
    return f"{controller_id}.0"


def controller_id(index: int) -> str:
    return hvp.SCSI_CONTROLLER_ID if index == 0 else f"{hvp.SCSI_CONTROLLER_ID}{index}"


@dataclass
class BusState:
    """Which addresses of which buses the instance's controllers and devices take."""

    hvparams: Mapping[str, Any]
    controllers: list[Controller] = field(default_factory=list)
    used: dict[str, set[Taken]] = field(default_factory=dict)  # bus -> taken addresses
    ids: set[str] = field(default_factory=set)
    shortfall: int = 0  # hotplug room a restart could not make again

    @classmethod
    def build(cls, hvparams: Mapping[str, Any], controllers: Iterable[Any] = (), devices: Iterable[Any] = ()) -> BusState:
        state = cls(dict(hvparams))
        for ctl in controllers:
            state.add_controller(cast(Controller, ctl))
        for dev in devices:
            if dev.get("hvinfo"):
                state.take(dev["hvinfo"])
        return state

    # -- bookkeeping -----------------------------------------------------

    @staticmethod
    def address(info: HvInfo) -> tuple[str, Taken] | None:
        """(bus, address on it) a device takes; None for a controller QEMU places itself."""
        pci = hvi.pci_addr(info)
        if pci is not None:
            return info["bus"], pci
        if "scsi-id" in info:
            return info["bus"], info["scsi-id"]
        if "unit" in info:
            return info["bus"], info["unit"]
        return None

    def take(self, info: HvInfo) -> None:
        """Mark ``info``'s address and id used; a second claim is an error."""
        dev_id = info["id"]
        if dev_id in self.ids:
            raise KvmError(f"device id {dev_id} is used twice in the runtime")
        where = self.address(info)
        if where is not None:
            bus, addr = where
            used = self.used.setdefault(bus, set())
            if addr in used:
                raise KvmError(f"device {dev_id}: address {hvi.where(info)} is already taken")
            if isinstance(addr, tuple) and addr[1] == 0 and (addr[0], None) in used:
                raise KvmError(f"device {dev_id}: slot {addr[0]:#04x} of {bus} is already taken")
            used.add(addr)
            if isinstance(addr, tuple):
                used.add((addr[0], None))  # the slot as a whole
        self.ids.add(dev_id)

    def add_controller(self, ctl: Controller) -> None:
        self.take(ctl["hvinfo"])
        self.controllers.append(ctl)

    def slot_used(self, bus: str, slot: int) -> bool:
        return (slot, None) in self.used.get(bus, set())

    # -- the buses -------------------------------------------------------

    @property
    def q35(self) -> bool:
        return hvp.is_q35(self.hvparams)

    @property
    def root(self) -> str:
        return hvp.root_bus(self.hvparams)

    def window(self) -> range:
        last = hvp.Q35_LAST_SLOT if self.q35 else hvp.PCI_LAST_SLOT
        return range(self.hvparams["kvm_pci_reservations"], last + 1)

    def of_kind(self, kind: str) -> list[HvInfo]:
        return [c["hvinfo"] for c in self.controllers if c["kind"] == kind]

    def pci_leaves(self) -> Iterator[tuple[str, int]]:
        """Every (bus, slot) a PCI device may take, in allocation order."""
        if self.q35:
            for port in self.of_kind(PORT_KIND):
                yield port["id"], 0
            return
        for slot in self.window():
            yield self.root, slot
        for bridge in self.of_kind(BRIDGE_KIND):
            for slot in BRIDGE_SLOTS:
                yield bridge["id"], slot

    def free_pci_leaves(self) -> list[tuple[str, int]]:
        return [(bus, slot) for bus, slot in self.pci_leaves() if not self.slot_used(bus, slot)]

    def scsi_controllers(self) -> list[HvInfo]:
        return self.of_kind(SCSI_KIND)

    def free_scsi_target(self) -> tuple[str, int] | None:
        for ctl in self.scsi_controllers():
            bus = scsi_bus_of(ctl["id"])
            for target in range(scsi_limit(ctl["driver"]) + 1):
                if target not in self.used.get(bus, set()):
                    return bus, target
        return None


def scsi_limit(driver: str) -> int:
    return next(limit for drv, limit in hvp.SCSI_CONTROLLERS.values() if drv == driver)


# -- placing -----------------------------------------------------------------


def _pci_full(state: BusState) -> KvmError:
    slots = state.hvparams["pci_hotplug_slots"]
    where = "PCIe root port" if state.q35 else "PCI slot"
    return KvmError(
        f"no free {where}: the instance was started with room for {slots} hotplugged PCI devices "
        f"(hvparam pci_hotplug_slots={slots}) and all are taken; raise pci_hotplug_slots "
        "(takes effect at the next start) or use SCSI disks"
    )


def place_pci(state: BusState, driver: str, dev_id: str) -> HvInfo:
    """A PCI leaf for a new device; marks it used."""
    free = state.free_pci_leaves()
    if not free:
        raise _pci_full(state)
    bus, slot = free[0]
    info = hvi.pci_hvinfo(driver, dev_id, bus, slot)
    state.take(info)
    return info


def place_scsi_controller(state: BusState) -> Controller:
    """A new SCSI controller of the instance's type (the next id), on a PCI leaf."""
    index = len(state.scsi_controllers())
    driver = hvp.scsi_controller(state.hvparams)[0]
    ctl: Controller = {"kind": SCSI_KIND, "hvinfo": place_pci(state, driver, controller_id(index))}
    state.controllers.append(ctl)
    return ctl


def place_disk(state: BusState, disk: Mapping[str, Any]) -> tuple[HvInfo, list[Controller]]:
    """hvinfo for a new disk of its type, and any SCSI controller it needs first; marks both used."""
    kind = disk_type(disk, state.hvparams)
    dev_id = hvi.make_id("disk", disk["uuid"], state.ids)
    driver = hvp.disk_driver(state.hvparams, kind)
    added: list[Controller] = []
    if kind in hvp.SCSI_DISK_TYPES:
        found = state.free_scsi_target()
        if found is None:
            ctl = place_scsi_controller(state)
            added.append(ctl)
            found = scsi_bus_of(ctl["hvinfo"]["id"]), 0  # a new controller's first target
        bus, target = found
        info = hvi.scsi_hvinfo(driver, dev_id, bus, target)
    elif kind == "ide":
        if state.q35:
            raise KvmError("ide disks need the pc machine (q35 has no IDE bus)")
        free = [(bus, unit) for bus, unit in hvp.IDE_SLOTS if unit not in state.used.get(bus, set())]
        if not free:
            raise KvmError("IDE buses full: ide.0 and ide.1 take 2 disks each (4 in all); use another disk type")
        info = hvi.ide_hvinfo(driver, dev_id, *free[0])
    else:
        return place_pci(state, driver, dev_id), added
    state.take(info)
    return info, added


def place_nic(state: BusState, nic: Mapping[str, Any]) -> HvInfo:
    dev_id = hvi.make_id("nic", nic["uuid"], state.ids)
    return place_pci(state, hvp.nic_driver(state.hvparams), dev_id)


# -- the topology a start needs ----------------------------------------------


def _add_bridge(state: BusState) -> bool:
    """A pci-bridge at the highest free slot of pci.0's window; False if none is free."""
    free = [slot for slot in state.window() if not state.slot_used(state.root, slot)]
    if not free:
        return False
    number = len(state.of_kind(BRIDGE_KIND)) + 1
    # ACPI hotplug (no SHPC: Linux cannot drive it here), and memory windows reserved for
    # what gets hotplugged behind it (without SHPC's BAR the firmware would give it none).
    info: HvInfo = {"driver": "pci-bridge", "id": f"pci.{number}", "bus": state.root, "addr": hex(free[-1]),
                    "chassis_nr": number, "shpc": False, "mem-reserve": BRIDGE_RESERVE, "pref64-reserve": BRIDGE_RESERVE}
    state.add_controller({"kind": BRIDGE_KIND, "hvinfo": info})
    return True


def _add_port(state: BusState) -> bool:
    """A pcie-root-port at the first free function of the window; False if the window is full."""
    for slot in state.window():
        for function in range(PORTS_PER_SLOT):
            if (slot, function) not in state.used.get(state.root, set()):
                if function == 0 and state.slot_used(state.root, slot):
                    break  # a device of its own sits in that slot
                number = len(state.of_kind(PORT_KIND)) + 1
                info: HvInfo = {"driver": "pcie-root-port", "id": f"pci.{number}", "bus": state.root,
                                "addr": f"{hex(slot)}.{function}", "chassis": number, "port": number}
                if function == 0:
                    info["multifunction"] = True
                state.add_controller({"kind": PORT_KIND, "hvinfo": info})
                return True
    return False


def provide_leaves(state: BusState, needed: int, required: int) -> int:
    """Add bridges (pc) or root ports (q35) until ``needed`` PCI leaves are free; returns how many short of it.

    Fewer than ``required`` (the devices being placed now) is an error; fewer
    than ``needed`` (those plus the hotplug room) only when nothing is
    recorded yet: a restart keeps its recorded layout even when the room for
    hotplug cannot be made again (its devices took the slots new bridges
    would need), and the caller warns.
    """
    grow = _add_port if state.q35 else _add_bridge
    while len(state.free_pci_leaves()) < needed:
        if not grow(state):
            break
    have = len(state.free_pci_leaves())
    if have < required or (have < needed and not state.ids - {c["hvinfo"]["id"] for c in state.controllers}):
        limit = "root ports" if state.q35 else "slots"
        raise KvmError(
            f"cannot make room for {needed} PCI devices ({have} free): the {limit} of {state.root} from "
            f"kvm_pci_reservations={state.hvparams['kvm_pci_reservations']} are all used; lower "
            f"pci_hotplug_slots={state.hvparams['pci_hotplug_slots']} or kvm_pci_reservations, or use SCSI disks"
        )
    return max(0, needed - have)


def assign(controllers: list[Controller], disks: list[DiskRecord], nics: list[NicRecord],
           hvparams: Mapping[str, Any]) -> BusState:
    """Place every device without hvinfo, and plan the controllers that needs (mutates the lists).

    Recorded controllers and devices keep their addresses and are seeded
    first, so new devices fill the holes around them. New SCSI controllers
    come first among the new PCI leaves, then PCI disks in index order, then
    NICs; the bridges or ports that make room for them and for
    ``pci_hotplug_slots`` more are added before anything is placed.
    """
    state = BusState.build(hvparams, controllers, [*disks, *nics])
    for disk in disks:
        disk["type"] = disk_type(disk, hvparams)
    new_disks = [d for d in disks if not d.get("hvinfo")]
    new_nics = [n for n in nics if not n.get("hvinfo")]
    scsi = [d for d in new_disks if disk_type(d, hvparams) in hvp.SCSI_DISK_TYPES]
    free_targets = sum(scsi_limit(c["driver"]) + 1 for c in state.scsi_controllers()) - sum(
        len(state.used.get(scsi_bus_of(c["id"]), set())) for c in state.scsi_controllers())
    per_controller = hvp.scsi_controller(hvparams)[1] + 1
    new_controllers = max(0, -(-(len(scsi) - free_targets) // per_controller))
    pci_disks = [d for d in new_disks if disk_type(d, hvparams) not in hvp.SCSI_DISK_TYPES | {"ide"}]
    required = new_controllers + len(pci_disks) + len(new_nics)
    state.shortfall = provide_leaves(state, required + hvparams["pci_hotplug_slots"], required)
    for _controller in range(new_controllers):
        place_scsi_controller(state)
    for disk in new_disks:
        if disk["type"] not in hvp.SCSI_DISK_TYPES:
            disk["hvinfo"] = place_disk(state, disk)[0]
    for disk in scsi:
        disk["hvinfo"] = place_disk(state, disk)[0]
    for nic in new_nics:
        nic["hvinfo"] = place_nic(state, nic)
    controllers[:] = state.controllers
    return state


# -- what kvm_instance_info reports --------------------------------------------


def describe(state: BusState) -> BusReport:
    """Every bus, bridge, port and controller with used, free and capacity."""
    root_used = sorted(s for s in state.window() if state.slot_used(state.root, s))
    report: BusReport = {
        "machine": "q35" if state.q35 else "pc",
        "pci": {
            "bus": state.root,
            "window": [f"{state.window().start:#04x}", f"{state.window().stop - 1:#04x}"],
            "used": [f"{s:#04x}" for s in root_used],
            "free": [f"{s:#04x}" for s in state.window() if s not in root_used],
        },
        "hotplug": {"pci_hotplug_slots": state.hvparams["pci_hotplug_slots"], "free_pci": len(state.free_pci_leaves())},
        "bridges": [],
        "ports": {"capacity": 0, "used": [], "free": 0},  # q35's root ports, one per hotpluggable device
        "scsi": [],
    }
    for bridge in state.of_kind(BRIDGE_KIND):
        used = [s for s in BRIDGE_SLOTS if state.slot_used(bridge["id"], s)]
        report["bridges"].append({"id": bridge["id"], "addr": bridge["addr"], "capacity": len(BRIDGE_SLOTS),
                                  "used": [f"{s:#04x}" for s in used], "free": len(BRIDGE_SLOTS) - len(used)})
    ports = state.of_kind(PORT_KIND)
    used_ports = [p["id"] for p in ports if state.slot_used(p["id"], 0)]
    report["ports"] = {"capacity": len(ports), "used": used_ports, "free": len(ports) - len(used_ports)}
    for ctl in state.scsi_controllers():
        bus = scsi_bus_of(ctl["id"])
        limit = scsi_limit(ctl["driver"]) + 1
        used_targets = sorted(t for t in state.used.get(bus, set()) if isinstance(t, int))
        report["scsi"].append({"id": ctl["id"], "bus": bus, "driver": ctl["driver"], "addr": ctl.get("addr"),
                               "max_targets": limit, "used": used_targets, "free": limit - len(used_targets)})
    return report
