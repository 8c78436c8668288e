# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An instance as ``kvm_instance`` asks for it, and how it differs from what runs (pure).

``requested_spec`` validates the task's options into a spec; ``summary``
is the comparable part of a spec or runtime (diff mode, idempotence);
``differences`` says what waits for the next start and which device lists
differ; ``kept_controllers`` and ``merge_devices`` decide which recorded
addresses a new start keeps.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TypedDict, TypeVar

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import allocator, devices, hvinfo, hvparams
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import KINDS, DeviceKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import DiskRecord, NicRecord, Runtime

MIN_MEMORY = 128  # a current distribution kernel does not boot in less (the test guest needs 88 MiB)
R = TypeVar("R", DiskRecord, NicRecord)


class Spec(TypedDict):
    """An instance as ``kvm_instance`` asks for it: validated, its devices records not yet placed."""

    name: str
    uuid: str
    memory: int
    vcpus: int
    hvparams: Mapping[str, Any]
    disks: list[DiskRecord]
    nics: list[NicRecord]


def requested_spec(params: Mapping[str, Any]) -> Spec:
    """Validate the module parameters into an instance spec (pure)."""
    name = params["name"]
    uuid = devices.instance_uuid(name, hvinfo.check_uuid(params["uuid"], "instance uuid") if params.get("uuid") else None)
    for key, low in (("memory", MIN_MEMORY), ("vcpus", 1)):
        if params[key] < low:
            raise KvmError(f"{key} must be at least {low}")
    hvp = hvparams.normalize(params.get("hvparams") or {})
    disks = [devices.disk_record(d, uuid) for d in params.get("disks") or []]
    nics = [devices.nic_record(n, uuid, i) for i, n in enumerate(params.get("nics") or [])]
    unique: list[tuple[str, Sequence[Mapping[str, Any]], str]] = [
        ("disk", disks, "uuid"), ("disk", disks, "path"), ("disk", disks, "uri"), ("nic", nics, "uuid"), ("nic", nics, "mac")]
    for kind, items, key in unique:
        values = [item[key] for item in items if item.get(key) is not None]
        dup = {v for v in values if values.count(v) > 1}
        if dup:
            raise KvmError(f"two {kind}s have the same {key}: {', '.join(sorted(dup))}")
    return {"name": name, "uuid": uuid, "memory": params["memory"], "vcpus": params["vcpus"],
            "hvparams": hvp, "disks": disks, "nics": nics}


DISK_KEYS = ("uuid", "path", "uri", "format", "mode", "type")
NIC_KEYS = ("uuid", "mac", "network")


def summary(spec: Any) -> dict[str, Any]:
    """The comparable part of a spec or runtime (for diff and idempotence)."""
    return {
        "memory": spec.get("memory"),
        "vcpus": spec.get("vcpus"),
        "hvparams": spec["hvparams"],
        "disks": [{**{k: d.get(k) for k in DISK_KEYS}, "type": allocator.disk_type(d, spec["hvparams"])} for d in spec["disks"]],
        "nics": [{k: n.get(k) for k in NIC_KEYS} for n in spec["nics"]],
    }


def differences(rt: Any, spec: Spec) -> tuple[list[str], list[str]]:
    """(pending spec changes, device list changes) between a runtime and a request."""
    pending = [f"{key}: {rt.get(key)!r} -> {want!r}" for key, want in (("memory", spec["memory"]), ("vcpus", spec["vcpus"]))
               if rt.get(key) != want]
    pending += [f"hvparams.{key}: {rt['hvparams'].get(key)!r} -> {value!r}"
                for key, value in spec["hvparams"].items() if rt["hvparams"].get(key) != value]
    device_changes = []
    for kind in KINDS:
        have = {kind.key(d, rt["hvparams"]) for d in rt[kind.name]}
        want = {kind.key(d, spec["hvparams"]) for d in spec[kind.name]}
        if have != want:
            device_changes.append(f"{kind.name} differ from the running instance ({len(want - have)} to add, "
                                  f"{len(have - want)} to remove): use kvmhv.qemu.{kind.module} on a running instance")
    return pending, device_changes


def kept_controllers(old: Runtime, hvp: Mapping[str, Any]) -> list[Any]:
    """The recorded controllers a new start keeps: all of them on the same machine family,
    SCSI controllers only while they are of the instance's controller type."""
    if hvparams.is_q35(old["hvparams"]) != hvparams.is_q35(hvp):
        return []
    driver = hvparams.scsi_controller(hvp)[0]
    return [dict(c) for c in old.get("controllers", []) if c["kind"] != "scsi" or c["hvinfo"]["driver"] == driver]


def merge_devices(old: Sequence[Mapping[str, Any]], new: list[R], hvp: Mapping[str, Any], kind: DeviceKind,
                  buses: set[str]) -> list[R]:
    """New device records that keep the recorded hvinfo of devices already known.

    A recorded hvinfo is kept when the same uuid is asked for again with the
    same driver, its bus still exists (``buses``) and a root-bus slot still
    lies in the window; everything else is placed afresh by the allocator.
    """
    recorded = {d["uuid"]: d for d in old}
    window_start = hvp["kvm_pci_reservations"]
    merged: list[R] = []
    for dev in new:
        prev = recorded.get(dev["uuid"])
        info = prev.get("hvinfo") if prev else None
        if info is not None and info["driver"] == kind.driver(dev, hvp) and info["bus"] in buses and not (
                info["bus"] == hvparams.root_bus(hvp) and (hvinfo.pci_slot(info) or 0) < window_start):
            kept = dev.copy()
            kept["hvinfo"] = info
            merged.append(kept)
        else:
            merged.append(dev)
    return merged
