# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disks and NICs as two objects: what tells one kind of device from the other, said once.

Hotplug, convergence, the spec diff and the engine ask the kind object
(``DISKS`` or ``NICS``) instead of comparing strings: how a request is
identified, which properties must match the plugged device, how its record
is built, where it is placed, what its ``-device`` adds to the hvinfo. The
name of a kind is the runtime file's key for its list (and the journal's).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping, Sequence, TypeAlias, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvps
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Controller, DiskRecord, HvInfo, NicRecord, Runtime

Kind = Literal["disks", "nics"]
RecordKind = Literal["controllers", "disks", "nics"]  # every list of recorded devices (a journal entry's kind)
Device: TypeAlias = "DiskRecord | NicRecord"


class DeviceKind:
    """One kind of hotpluggable device; the subclasses below are the only two."""

    name: Kind
    noun: str  # how messages name one device of the kind
    module: str  # the module that plugs one on a running instance
    properties: tuple[str, ...]  # what must match for a request to be the device already plugged
    backend_step: str  # the command that adds its backend (what a failure of it is reported as)
    placements: tuple[str, ...]  # the driver kinds (hvinfo.driver_kind) a stored record of the kind may have

    def records(self, rt: Runtime) -> Sequence[Device]:
        raise NotImplementedError

    def set_records(self, rt: Runtime, recs: Sequence[Mapping[str, Any]]) -> None:
        """Make ``recs`` the kind's list in ``rt`` (records checked by whoever built them)."""
        raise NotImplementedError

    def identity(self, spec: Mapping[str, Any]) -> tuple[str, Any]:
        """(key, value) that identifies a device: its uuid when given, else what the kind names it by."""
        raise NotImplementedError

    def asked(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The identity-independent properties a request states, normalised like a record."""
        raise NotImplementedError

    def wanted(self, want: Mapping[str, Any], hvparams: Mapping[str, Any]) -> dict[str, Any]:
        """Everything a ``kvm_instance`` list item fixes about a device besides its identity."""
        raise NotImplementedError

    def new_record(self, spec: Mapping[str, Any], instance_uuid: str) -> Mapping[str, Any]:
        """The runtime record a request describes (validated; not yet placed)."""
        raise NotImplementedError

    def claim(self, record: Mapping[str, Any]) -> tuple[str, str]:
        """(key, how a message names it): what no second device of the instance may use too."""
        raise NotImplementedError

    def place(self, state: allocator.BusState, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[Controller]]:
        """The placed record of a new device and the SCSI controllers it needs first (the allocator marks all used)."""
        raise NotImplementedError

    def driver(self, record: Mapping[str, Any], hvparams: Mapping[str, Any]) -> str:
        """The QEMU driver a device of the kind gets on an instance with ``hvparams``."""
        raise NotImplementedError

    def device_extra(self, record: Mapping[str, Any]) -> dict[str, object]:
        """What its ``-device`` / ``device_add`` adds to the hvinfo (links to its backend)."""
        raise NotImplementedError

    def key(self, dev: Mapping[str, Any], hvparams: Mapping[str, Any]) -> tuple[Any, ...]:
        """Identity and properties, hashable: two devices with equal keys are the same device."""
        raise NotImplementedError

    def backend(self, record: Mapping[str, Any], fdset: int | None, fdname: str | None,
                block_device: bool) -> tuple[str, dict[str, object]] | None:
        """The QMP command that adds the device's backend from what was handed over; None without one."""
        raise NotImplementedError

    def release(self, dev_id: str, fdsets: list[int]) -> list[tuple[str, dict[str, object]]]:
        """The QMP commands that remove its backend and descriptors once the device is gone."""
        raise NotImplementedError

    def mismatch(self, found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
        """The properties in which the plugged device differs from the request."""
        return [f"{key} {found.get(key)!r} (asked: {wanted.get(key)!r})" for key in self.properties
                if found.get(key) != wanted.get(key)]


class Disks(DeviceKind):
    name: Kind = "disks"
    noun = "disk"
    module = "kvm_disk_hotplug"
    properties = ("path", "uri", "format", "mode", "type")
    backend_step = "blockdev-add"
    placements = ("pci", "scsi", "ide")

    def records(self, rt: Runtime) -> Sequence[DiskRecord]:
        return rt.get("disks", [])

    def set_records(self, rt: Runtime, recs: Sequence[Mapping[str, Any]]) -> None:
        rt["disks"] = cast("list[DiskRecord]", list(recs))

    def identity(self, spec: Mapping[str, Any]) -> tuple[str, Any]:
        if spec.get("uuid"):
            return "uuid", hvi.check_uuid(spec["uuid"])
        for key in ("path", "uri"):
            if spec.get(key):
                return key, spec[key]
        raise KvmError("disk needs a 'uuid', a 'path' or a 'uri' to be identified")

    def asked(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        asked = {k: spec[k] for k in self.properties if k in spec}
        if "type" in asked:
            asked["type"] = hvps.DISK_TYPE_ALIASES.get(asked["type"], asked["type"])
        return asked

    def wanted(self, want: Mapping[str, Any], hvparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"path": want.get("path"), "uri": want.get("uri"), "format": want["format"], "mode": want["mode"],
                "type": allocator.disk_type(want, hvparams)}

    def new_record(self, spec: Mapping[str, Any], instance_uuid: str) -> Mapping[str, Any]:
        return devices.disk_record(spec, instance_uuid)

    def claim(self, record: Mapping[str, Any]) -> tuple[str, str]:
        key = "path" if record.get("path") else "uri"
        return key, f"disk {record.get(key)}"

    def place(self, state: allocator.BusState, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[Controller]]:
        """A disk gets its type (the instance's ``disk_type`` unless it names one); an IDE disk is refused
        (QEMU's IDE bus has no hotplug)."""
        placed = {**record, "type": allocator.disk_type(record, state.hvparams)}
        if placed["type"] == "ide":
            raise KvmError(f"disk {record.get('path') or record.get('uri')}: ide disks cannot be hotplugged (QEMU's IDE bus "
                           "has no hotplug); use a SCSI or paravirtual type, or add it at the next start")
        info, controllers = allocator.place_disk(state, placed)
        return {**placed, "hvinfo": info}, controllers

    def driver(self, record: Mapping[str, Any], hvparams: Mapping[str, Any]) -> str:
        return hvps.disk_driver(hvparams, allocator.disk_type(record, hvparams))

    def device_extra(self, record: Mapping[str, Any]) -> dict[str, object]:
        return devices.disk_device_extra(record)

    def key(self, dev: Mapping[str, Any], hvparams: Mapping[str, Any]) -> tuple[Any, ...]:
        return (dev.get("uuid"), *(dev.get(k) for k in self.properties[:-1]), allocator.disk_type(dev, hvparams))

    def backend(self, record: Mapping[str, Any], fdset: int | None, fdname: str | None,
                block_device: bool) -> tuple[str, dict[str, object]] | None:
        if not devices.has_medium(record):
            return None
        return "blockdev-add", devices.blockdev_args(record, f"/dev/fdset/{fdset}", block_device)

    def release(self, dev_id: str, fdsets: list[int]) -> list[tuple[str, dict[str, object]]]:
        removes: list[tuple[str, dict[str, object]]] = [("remove-fd", {"fdset-id": s}) for s in fdsets]
        return [("blockdev-del", {"node-name": dev_id}), *removes]


class Nics(DeviceKind):
    name: Kind = "nics"
    noun = "nic"
    module = "kvm_nic_hotplug"
    properties = ("mac", "network")
    backend_step = "netdev_add"
    placements = ("pci",)

    def records(self, rt: Runtime) -> Sequence[NicRecord]:
        return rt.get("nics", [])

    def set_records(self, rt: Runtime, recs: Sequence[Mapping[str, Any]]) -> None:
        rt["nics"] = cast("list[NicRecord]", list(recs))

    def identity(self, spec: Mapping[str, Any]) -> tuple[str, Any]:
        if spec.get("uuid"):
            return "uuid", hvi.check_uuid(spec["uuid"])
        if not spec.get("mac"):
            raise KvmError("nic needs a 'uuid' or a 'mac' to be identified")
        return "mac", str(spec["mac"]).lower()

    def asked(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        asked: dict[str, Any] = {}
        if "mac" in spec:
            asked["mac"] = str(spec["mac"]).lower()
        if "network" in spec:
            asked["network"] = devices.network_record(spec["network"])
        return asked

    def wanted(self, want: Mapping[str, Any], hvparams: Mapping[str, Any]) -> dict[str, Any]:
        return {"mac": want["mac"], "network": want.get("network")}

    def new_record(self, spec: Mapping[str, Any], instance_uuid: str) -> Mapping[str, Any]:
        return devices.nic_record(spec, instance_uuid)

    def claim(self, record: Mapping[str, Any]) -> tuple[str, str]:
        return "mac", f"MAC {record.get('mac')}"

    def place(self, state: allocator.BusState, record: Mapping[str, Any]) -> tuple[dict[str, Any], list[Controller]]:
        return {**record, "hvinfo": allocator.place_nic(state, record)}, []

    def driver(self, record: Mapping[str, Any], hvparams: Mapping[str, Any]) -> str:
        return hvps.nic_driver(hvparams)

    def device_extra(self, record: Mapping[str, Any]) -> dict[str, object]:
        return devices.nic_device_extra(record)

    def key(self, dev: Mapping[str, Any], hvparams: Mapping[str, Any]) -> tuple[Any, ...]:
        """A network by its sorted JSON, so key order (the runtime file is written sorted) never makes two
        equal networks differ."""
        return (dev["uuid"], dev["mac"], json.dumps(dev.get("network"), sort_keys=True))

    def backend(self, record: Mapping[str, Any], fdset: int | None, fdname: str | None,
                block_device: bool) -> tuple[str, dict[str, object]] | None:
        args = devices.netdev_args(record, fdname)
        return ("netdev_add", args) if args else None

    def release(self, dev_id: str, fdsets: list[int]) -> list[tuple[str, dict[str, object]]]:
        return [("netdev_del", {"id": dev_id}), ("closefd", {"fdname": dev_id})]


DISKS, NICS = Disks(), Nics()
KINDS: tuple[DeviceKind, ...] = (DISKS, NICS)  # the order devices are placed in: disks first
BY_NAME: dict[str, DeviceKind] = {kind.name: kind for kind in KINDS}


def of(name: str) -> DeviceKind | None:
    """The kind object of a runtime list name; None for ``controllers``."""
    return BY_NAME.get(name)


def all_hvinfo(rt: Runtime) -> list[HvInfo]:
    """The hvinfo of every recorded controller, disk and NIC, in the runtime file's order."""
    return [c["hvinfo"] for c in rt.get("controllers", [])] + [d["hvinfo"] for kind in KINDS for d in kind.records(rt)]


def append(rt: Runtime, name: RecordKind, record: Mapping[str, Any]) -> None:
    """Record one more device in ``rt``'s list ``name`` (the record was built for that list)."""
    kind = of(name)
    if kind is None:
        rt.setdefault("controllers", []).append(cast(Controller, record))
    else:
        kind.set_records(rt, [*kind.records(rt), record])
