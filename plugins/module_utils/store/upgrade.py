# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime upgrader: every runtime format ever written -> the current one.

Formats, each brought to the next by one step function:

* version 0, Ganeti's list layouts ``[kvm_cmd, [nic, ...], hvparams]`` and
  ``[kvm_cmd, [nic, ...], hvparams, [[disk, link, uri], ...]]`` (Ganeti
  2.0-3.1, also what this collection's first downgrade export wrote), read by
  ``store.ganeti``: legacy QEMU options rewritten, host plumbing dropped,
  ``pci: N`` -> hvinfo with the id ``hot<nic|disk>-<first uuid group>-pci-N``
  the running QEMU knows, QEMU-placed devices kept in ``fixed``, Ganeti's
  own fields and hvparams kept aside for the export back.
* version 1, a JSON object; a stopped instance carries ``stopped: true``.
* version 2: the mark is ``mark: stopped|incoming``; the topology is recorded
  in ``controllers`` (SCSI controllers, pci-bridges, pcie-root-ports, each
  with its hvinfo); every disk records its ``type``. A version-1 SCSI
  controller (``-device <driver>,id=scsi`` in ``kvm_cmd``, placed by QEMU)
  moves to ``controllers`` without an address, so QEMU still places it.

A file newer than this code is refused, naming both versions. Every result
is validated strictly (``validate``) before anyone uses it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import storage
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.allocator import BusState
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DISKS, KINDS
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.validate import validate_extras
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import INCOMING, STOPPED, DiskRecord, NicRecord, Runtime, keys_of

FORMAT_VERSION = 2
LEGACY_VERSION = 0
MARKS = (STOPPED, INCOMING)
_DECLARED = {"runtime": keys_of(Runtime), "disks": keys_of(DiskRecord), "nics": keys_of(NicRecord)}
CONTROLLER_KINDS = {"scsi": "controller", "pci-bridge": "pci-bridge", "pcie-root-port": "pcie-root-port"}


def from_legacy(data: list[Any]) -> dict[str, Any]:
    """Version 0 (Ganeti's list layouts, 2.0-3.1) -> version 1: see ``store.ganeti``.

    The Ganeti reader is imported here, not at the top: every module call
    loads a runtime file, and only files written by Ganeti need it (it is a
    third of what a hotplug imports).
    """
    from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.read import read as read_ganeti  # noqa: PLC0415

    return read_ganeti(data)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: ``stopped: true`` becomes a mark, the SCSI controller a recorded controller, disks get a type."""
    if data.pop("stopped", False):
        data["mark"] = "stopped"
    argv = data.get("kvm_cmd")
    controllers = data.setdefault("controllers", [])
    if isinstance(argv, list):
        for pos in range(len(argv) - 1):
            head = str(argv[pos + 1]).split(",")
            if argv[pos] == "-device" and head[0] in hvp.CONTROLLER_DRIVERS and head[1:] == [f"id={hvp.SCSI_CONTROLLER_ID}"]:
                controllers.append({"kind": "scsi", "hvinfo": {"driver": head[0], "id": hvp.SCSI_CONTROLLER_ID, "bus": hvp.PCI_BUS}})
                data["kvm_cmd"] = argv[:pos] + argv[pos + 2:]
                break
    for disk in data.get("disks") or []:
        if isinstance(disk, dict) and isinstance(disk.get("hvinfo"), dict):
            disk.setdefault("type", hvp.DRIVER_DISK_TYPES.get(disk["hvinfo"].get("driver"), "paravirtual"))
    data["version"] = 2
    return data


# version found -> the step bringing it to the next version
_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def upgrade(data: Any, fresh: bool = False) -> tuple[Runtime, int]:
    """Return (runtime in the current format, version it was stored in).

    ``data`` is left untouched unless ``fresh`` says the caller just parsed
    it and hands it over (then it is upgraded in place, without a copy).
    """
    if isinstance(data, list):
        version = LEGACY_VERSION
        runtime = from_legacy(data)
    elif isinstance(data, dict):
        stored = data.get("version")
        if isinstance(stored, bool) or not isinstance(stored, int):
            raise KvmError(f"runtime has no integer format version (found {stored!r})")
        version = stored
        if version > FORMAT_VERSION:
            raise KvmError(
                f"runtime format version {version} is newer than this collection understands "
                f"(version {FORMAT_VERSION}); upgrade kvmhv.qemu"
            )
        if version != FORMAT_VERSION and version not in _STEPS:
            raise KvmError(f"runtime format version {version} is unknown")
        runtime = data if fresh else copy.deepcopy(data)
    else:
        raise KvmError("runtime is neither a JSON object nor the legacy list layout")
    while runtime["version"] != FORMAT_VERSION:
        runtime = _STEPS[runtime["version"]](runtime)
    return validate(runtime), version


def _check_disk(dev: dict[str, object], where: str) -> None:
    path, uri = dev.get("path"), dev.get("uri")
    if path is not None and (not isinstance(path, str) or not path.startswith("/") or "\x00" in path):
        raise KvmError(f"{where}: path {path!r} must be an absolute path")
    if uri is not None and not isinstance(uri, str):
        raise KvmError(f"{where}: uri must be a string")
    if dev.get("format", "raw") not in devices.DISK_FORMATS:
        raise KvmError(f"{where}: format {dev.get('format')!r} is not one of {', '.join(devices.DISK_FORMATS)}")
    if dev.get("mode", "rw") not in devices.DISK_MODES:
        raise KvmError(f"{where}: mode {dev.get('mode')!r} is not one of {', '.join(devices.DISK_MODES)}")
    dev.setdefault("format", "raw")
    dev.setdefault("mode", "rw")


def _check_nic(dev: dict[str, object], where: str) -> None:
    mac = dev.get("mac")
    if not isinstance(mac, str) or not devices.MAC_RE.match(mac):
        raise KvmError(f"{where}: mac {mac!r} is not a MAC address")
    try:
        dev["network"] = devices.network_record(dev.get("network"))
    except KvmError as err:
        raise KvmError(f"{where}: {err.msg}") from None


def _only_declared(record: Mapping[str, object], kind: str, where: str) -> None:
    """Refuse a field types.py does not declare: nothing reads it, yet every save would write it back."""
    extra = sorted(set(record) - _DECLARED[kind])
    if extra:
        raise KvmError(f"{where} has field(s) {', '.join(map(repr, extra))} this collection does not know; "
                       "remove them from the file")


def validate(runtime: dict[str, Any]) -> Runtime:
    """Strict checks so a damaged or hostile file fails here, before QEMU or a hotplug sees it."""
    _only_declared(runtime, "runtime", "runtime")
    for key, shape in (("kvm_cmd", list), ("hvparams", dict), ("disks", list), ("nics", list)):
        if not isinstance(runtime.get(key), shape):
            raise KvmError(f"runtime field {key!r} is missing or not a {shape.__name__}")
    for key in ("kvm_cmd", "kvm_extra"):
        if not all(isinstance(arg, str) and "\x00" not in arg for arg in runtime.get(key, [])):
            raise KvmError(f"runtime field {key!r} must be a list of strings")
    runtime["hvparams"] = hvp.normalize(runtime["hvparams"])
    runtime.setdefault("kvm_extra", [])
    mark = runtime.get("mark")
    if mark is not None and mark not in MARKS:
        raise KvmError(f"runtime mark {mark!r} is not one of {', '.join(MARKS)}")
    controllers = runtime.setdefault("controllers", [])
    if not isinstance(controllers, list):
        raise KvmError("runtime field 'controllers' must be a list")
    for pos, ctl in enumerate(controllers):
        where = f"runtime controller {pos}"
        if not isinstance(ctl, dict) or ctl.get("kind") not in CONTROLLER_KINDS or set(ctl) != {"kind", "hvinfo"}:
            raise KvmError(f"{where} must be {{kind: {'|'.join(CONTROLLER_KINDS)}, hvinfo}}")
        ctl["hvinfo"] = hvi.validate(ctl["hvinfo"], where, (CONTROLLER_KINDS[ctl["kind"]],))
    if "created_images" in runtime:
        storage.check_created(runtime["created_images"])
    for kind in KINDS:
        for pos, dev in enumerate(runtime[kind.name]):
            where = f"runtime {kind.noun} {pos}"
            if not isinstance(dev, dict):
                raise KvmError(f"{where} must be a mapping")
            _only_declared(dev, kind.name, where)
            dev["uuid"] = hvi.check_uuid(dev.get("uuid"), f"{where} uuid")
            dev["hvinfo"] = hvi.validate(dev.get("hvinfo"), where, kind.placements)
            if kind is DISKS:
                _check_disk(dev, where)
                dev.setdefault("type", hvp.DRIVER_DISK_TYPES.get(dev["hvinfo"]["driver"]))
                if hvp.DISK_DRIVERS.get(dev["type"]) != dev["hvinfo"]["driver"]:
                    raise KvmError(f"{where}: type {dev['type']!r} does not match driver {dev['hvinfo']['driver']}")
            else:
                _check_nic(dev, where)
    validate_extras(runtime)  # fixed devices, an adopted QEMU, Ganeti's side data
    state = BusState.build(runtime["hvparams"], controllers, [*runtime["disks"], *runtime["nics"]])
    buses = {state.root} | {c["hvinfo"]["id"] for c in controllers if c["kind"] != "scsi"}
    buses |= {f"{c['hvinfo']['id']}.0" for c in controllers if c["kind"] == "scsi"} | {bus for bus, _unit in hvp.IDE_SLOTS}
    for kind in KINDS:
        for dev in runtime[kind.name]:
            if dev["hvinfo"]["bus"] not in buses:
                raise KvmError(f"runtime {kind.noun} {dev['hvinfo']['id']} sits on bus {dev['hvinfo']['bus']}, "
                               "which no recorded controller provides")
    return cast(Runtime, runtime)


def _unexportable_controllers(runtime: Runtime, keep_qemu_placed_scsi: bool) -> list[str]:
    """Why the recorded controllers do not fit an older layout (bridges and ports nobody uses are
    dropped: they only gave room for hotplug)."""
    used_buses = {dev["hvinfo"]["bus"] for kind in KINDS for dev in kind.records(runtime)}
    reasons = []
    for ctl in runtime.get("controllers", []):
        info = ctl["hvinfo"]
        if ctl["kind"] != "scsi":
            if info["id"] in used_buses:
                reasons.append(f"devices sit on {ctl['kind']} {info['id']}")
        elif not (keep_qemu_placed_scsi and "addr" not in info and info["id"] == hvp.SCSI_CONTROLLER_ID):
            reasons.append(f"SCSI controller {info['id']} is a recorded PCI device")
    return reasons


def to_legacy(runtime: Runtime) -> list[Any]:
    """Downgrade export to Ganeti 2.10-2.15's layout (integer pci slots); see ``store.ganeti.export``."""
    from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.export import export as export_ganeti  # noqa: PLC0415

    return export_ganeti(dict(runtime), "2")


def to_v1(runtime: Runtime) -> dict[str, Any]:
    """Downgrade export to version 1: only when the topology fits it (pc, at most one SCSI controller
    placed by QEMU, every disk of the instance's disk_type on a path)."""
    hvparams = runtime["hvparams"]
    reasons = []
    if hvp.is_q35(hvparams):
        reasons.append("the machine is q35")
    reasons += _unexportable_controllers(runtime, keep_qemu_placed_scsi=True)
    for disk in runtime["disks"]:
        if disk.get("type") != hvparams["disk_type"]:
            reasons.append(f"disk {disk['hvinfo']['id']} is {disk.get('type')}, the instance's disk_type is {hvparams['disk_type']}")
        if not disk.get("path"):
            reasons.append(f"disk {disk['hvinfo']['id']} has no path (version 1 only knows host files)")
    if reasons:
        raise KvmError(f"cannot export to runtime format version 1: {'; '.join(reasons)}")
    data: dict[str, Any] = copy.deepcopy(dict(runtime))
    for ctl in data.pop("controllers", []):
        if ctl["kind"] == "scsi":
            data["kvm_cmd"] += ["-device", f"{ctl['hvinfo']['driver']},id={ctl['hvinfo']['id']}"]
    for disk in data["disks"]:
        disk.pop("type", None)
        disk.pop("uri", None)
    if data.pop("mark", None) == "stopped":
        data["stopped"] = True
    data["hvparams"].pop("pci_hotplug_slots", None)  # version 1 readers refuse hvparams they do not know
    data["version"] = 1
    return data
