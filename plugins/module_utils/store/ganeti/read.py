# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Ganeti runtime file (any layout 2.0-3.1) -> a current runtime: the layout, the hvparams, the whole record.

**Layouts read** (``read``), told apart by their content, not by a version:

* 2.0-2.9: three elements ``[kvm_cmd, nics, hvparams]``; the disks are
  ``-drive`` options inside ``kvm_cmd`` and QEMU placed every disk and NIC.
* 2.10-2.15: a fourth element, the disk list ``[[disk, link, uri], ...]``;
  disks and NICs carry an integer ``pci`` slot.
* 2.16-3.1: ``hvinfo`` dicts instead of ``pci`` (ids ``disk-xxxxxxxx-xxxx-xxxx``,
  slots from ``kvm_pci_reservations``, 12 by default, so below 0x10).

Files of one era re-saved by a later one mix these traits (a 2.9 VM after a
hotplug under 2.15 has ``-drive`` disks in ``kvm_cmd`` *and* a disk list);
each device is read by what it carries (``records``); ``kvm_cmd`` is made
current by ``kvm_cmd``.

The SCSI controller Ganeti puts in ``kvm_cmd`` (``-device <type>,id=scsi``)
is recorded in ``controllers`` for its bus, and stays in ``kvm_cmd`` where
it is, so QEMU places it as before.

**hvparams**: ``disk_type``, ``nic_type``, ``scsi_controller_type`` and
``kvm_pci_reservations`` are honoured (12, Ganeti's default, when the file
predates the parameter; at least 4); the machine type and accelerator come
from ``kvm_cmd`` (what the QEMU runs), not from defaults. Ganeti's other
hvparams are kept aside in ``legacy_hvparams``. Values that build devices
this collection cannot (``disk_type`` sd/mtd/pflash, ``nic_type``
ne2k_isa) are refused when read; ones it cannot start yet (multiqueue NICs,
``-drive if=scsi`` disks, disks reached through a uri) are read and refused
by ``model.fixed.unstartable`` when a start is asked for.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti import kvm_cmd, records
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.opts import argv_value, first_field, groups_of, opt_name, split_opts
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Controller, HvInfo

LAYOUT_DRIVES = "2.0-2.9"  # three elements, disks inside kvm_cmd
LAYOUT_PCI = "2.10-2.15"  # integer pci slots
LAYOUT_HVINFO = "2.16-3.1"  # hvinfo dicts
GANETI_DEFAULT_RESERVATIONS = 12
_UNSUPPORTED_DISK_TYPES = ("sd", "mtd", "pflash")
_NUM_RE = re.compile(r"^([0-9]+)([MmGg]?)\Z")


def _mib(text: str | None) -> int | None:
    match = _NUM_RE.match(first_field(text, "size") or "")
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2) in ("G", "g") else 1)


def _hvparams(ganeti_hv: Mapping[str, Any], argv: list[str], notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(this collection's hvparams, Ganeti's hvparams kept aside) for a Ganeti runtime."""
    disk_type = ganeti_hv.get("disk_type") or "paravirtual"
    if disk_type in _UNSUPPORTED_DISK_TYPES:
        raise KvmError(f"Ganeti runtime: disk_type {disk_type!r} places disks on a bus QEMU's pc machine does not have; "
                       "this collection cannot run such an instance")
    nic_type = ganeti_hv.get("nic_type") or "paravirtual"
    if nic_type == "ne2k_isa":
        raise KvmError("Ganeti runtime: nic_type 'ne2k_isa' is an ISA NIC that QEMU places itself and cannot hotplug; "
                       "this collection cannot run such an instance")
    ours: dict[str, Any] = {"disk_type": disk_type, "nic_type": nic_type}
    if ganeti_hv.get("scsi_controller_type"):
        ours["scsi_controller_type"] = ganeti_hv["scsi_controller_type"]
    res = ganeti_hv.get("kvm_pci_reservations")
    if isinstance(res, bool) or not isinstance(res, int):
        res = GANETI_DEFAULT_RESERVATIONS
        ours["reservations_default"] = True  # taken out again below; tells read() the file predates the parameter
        notes.append(f"hvparam kvm_pci_reservations is missing: new devices go from slot {res:#04x} up (Ganeti's default)")
    elif res < hvp.MIN_PCI_RESERVATIONS:
        notes.append(f"hvparam kvm_pci_reservations={res} raised to {hvp.MIN_PCI_RESERVATIONS} (QEMU's own devices need the low slots)")
        res = hvp.MIN_PCI_RESERVATIONS
    ours["kvm_pci_reservations"] = min(res, hvp.PCI_LAST_SLOT + 1)
    defaulted = ours.pop("reservations_default", False)
    machine, accel = kvm_cmd.machine_of(argv)
    if accel:
        ours["accel"] = accel
    if machine:
        ours["machine_type"] = machine
    try:
        normalized = hvp.normalize(ours)
    except KvmError as err:
        if not machine or "machine_type" not in err.msg or not re.match(r"^pc(-[0-9.]+)?\Z", machine):
            raise KvmError(f"Ganeti runtime: {err.msg}") from None
        # An older i440fx name (pc-0.12, pc-1.0): kvm_cmd keeps it; new starts use "pc".
        ours["machine_type"] = "pc"
        notes.append(f"machine {machine} is recorded as machine_type pc (kvm_cmd keeps {machine})")
        normalized = hvp.normalize(ours)
    legacy = {k: v for k, v in ganeti_hv.items() if not (k in normalized and normalized[k] == v)}
    if defaulted:
        legacy["reservations_default"] = True
    return normalized, legacy


def layout_of(data: list[Any]) -> str:
    """Which Ganeti era wrote ``data`` (the newest trait found wins)."""
    if len(data) == 3:
        return LAYOUT_DRIVES
    devs = [n for n in data[1] if isinstance(n, dict)] + [e[0] for e in data[3] if isinstance(e, list) and e and isinstance(e[0], dict)]
    if any("hvinfo" in d for d in devs) or (not any("pci" in d for d in devs) and "kvm_pci_reservations" in data[2]):
        return LAYOUT_HVINFO
    return LAYOUT_PCI


# Ganeti's scsi_controller_type -> the QEMU driver it names (QEMU's alias lsi is lsi53c895a)
_SCSI_CONTROLLERS = {"lsi": "lsi53c895a", **{drv: drv for drv in hvp.CONTROLLER_DRIVERS}}


def _controllers(argv: list[str]) -> list[Controller]:
    """The SCSI controller Ganeti puts in kvm_cmd (``-device <type>,id=scsi``), recorded for its bus.

    It stays in ``kvm_cmd`` too, where it is: QEMU placed it in command-line
    order among kvm_cmd's other unaddressed devices (``argv.controller_argv``
    does not add it again).
    """
    for group in groups_of(argv):
        if opt_name(group[0]) == "device" and len(group) > 1:
            parts = split_opts(group[1])
            if parts[0] in _SCSI_CONTROLLERS and f"id={hvp.SCSI_CONTROLLER_ID}" in parts[1:]:
                info: HvInfo = {"driver": _SCSI_CONTROLLERS[parts[0]], "id": hvp.SCSI_CONTROLLER_ID, "bus": hvp.PCI_BUS}
                addr = [p[5:] for p in parts[1:] if p.startswith("addr=")]
                if addr:
                    info["addr"] = addr[0]
                return [{"kind": "scsi", "hvinfo": info}]
    return []


def read(data: list[Any]) -> dict[str, Any]:
    """A Ganeti runtime (any layout, see the module doc) -> a current (version 2) runtime dict.

    Written for version 2 directly: the version-1 step would move the SCSI
    controller out of ``kvm_cmd`` and change where QEMU places it.
    """
    if len(data) not in (3, 4) or not isinstance(data[0], list) or not isinstance(data[1], list) \
            or not isinstance(data[2], dict) or (len(data) == 4 and not isinstance(data[3], list)):
        raise KvmError("legacy runtime must be [kvm_cmd, [nic, ...], hvparams] or "
                       "[kvm_cmd, [nic, ...], hvparams, [[disk, link, uri], ...]] (Ganeti's layouts)")
    notes: list[str] = []
    plumbing: list[list[str]] = []
    if len(data) == 3:
        notes.append("Ganeti runtime with three elements (before 2.10): its disks are -drive options in kvm_cmd")
    original = kvm_cmd.strings(data[0])
    hv, legacy = _hvparams(data[2], original, notes)
    reservations_default = legacy.pop("reservations_default", False)
    argv, drives = kvm_cmd.rewrite(original, notes, plumbing)
    nics, fixed_nics = records.nics(data[1], hv, notes)
    disks, fixed_disks = records.disks(data[3] if len(data) == 4 else [], hv, notes)
    queues = data[2].get("virtio_net_queues")
    if isinstance(queues, int) and not isinstance(queues, bool) and queues > 1:
        notes.append(f"hvparam virtio_net_queues={queues}: multiqueue NICs cannot be started by this collection")
    name = first_field(argv_value(original, "name"), "guest")
    runtime: dict[str, Any] = {
        "version": 2,
        "name": name or None,
        "uuid": argv_value(original, "uuid"),
        "memory": _mib(argv_value(original, "m")),
        "vcpus": _mib(first_field(argv_value(original, "smp"), "cpus")),
        "hvparams": hv,
        "legacy_hvparams": legacy,
        "kvm_cmd": argv,
        "kvm_extra": [],
        "controllers": _controllers(argv),
        "disks": disks,
        "nics": nics,
        "ganeti": {"layout": layout_of(data), "plumbing": plumbing, "notes": notes,
                   # the file predates kvm_pci_reservations: adoption packs new devices after QEMU's own
                   "reservations_default": reservations_default},
    }
    # Tail order matters for QEMU's placement: NICs, then disks of the disk list, then kvm_cmd's drives.
    fixed = fixed_nics + fixed_disks + drives
    if fixed:
        runtime["fixed"] = fixed
    return runtime


def notes(runtime: Mapping[str, Any]) -> list[str]:
    """What reading a Ganeti runtime changed or assumed, for kvm_instance_info."""
    meta = runtime.get("ganeti")
    return list(meta.get("notes", [])) if isinstance(meta, dict) else []
