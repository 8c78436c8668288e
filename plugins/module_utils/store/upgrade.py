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
* version 2: the mark is ``mark: stopped|incoming``; a hotplug in flight is
  journalled in ``pending``.

A file newer than this code is refused, naming both versions. Every result
is validated strictly (``validate``) before anyone uses it.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.allocator import BusState
from ansible_collections.kvmhv.qemu.plugins.module_utils.store import ganeti
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import Runtime

FORMAT_VERSION = 2
LEGACY_VERSION = 0
MARKS = ("stopped", "incoming")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def from_legacy(data: list[Any]) -> dict[str, Any]:
    """Version 0 (Ganeti's list layouts, 2.0-3.1) -> version 1: see ``store.ganeti``."""
    return ganeti.read(data)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: ``stopped: true`` becomes ``mark: stopped``."""
    if data.pop("stopped", False):
        data["mark"] = "stopped"
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
        version = data.get("version")  # type: ignore[assignment]
        if isinstance(version, bool) or not isinstance(version, int):
            raise KvmError(f"runtime has no integer format version (found {version!r})")
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


def _check_disk(dev: dict[str, Any], where: str) -> None:
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


def _check_nic(dev: dict[str, Any], where: str) -> None:
    if not isinstance(dev.get("mac"), str) or not _MAC_RE.match(dev["mac"]):
        raise KvmError(f"{where}: mac {dev.get('mac')!r} is not a MAC address")
    try:
        dev["network"] = devices.network_record(dev.get("network"))
    except KvmError as err:
        raise KvmError(f"{where}: {err.msg}") from None


def validate(runtime: dict[str, Any]) -> Runtime:
    """Strict checks so a damaged or hostile file fails here, before QEMU or a hotplug sees it."""
    for key, kind in (("kvm_cmd", list), ("hvparams", dict), ("disks", list), ("nics", list)):
        if not isinstance(runtime.get(key), kind):
            raise KvmError(f"runtime field {key!r} is missing or not a {kind.__name__}")
    for key in ("kvm_cmd", "kvm_extra"):
        if not all(isinstance(arg, str) and "\x00" not in arg for arg in runtime.get(key, [])):
            raise KvmError(f"runtime field {key!r} must be a list of strings")
    runtime["hvparams"] = hvp.normalize(runtime["hvparams"])
    runtime.setdefault("kvm_extra", [])
    mark = runtime.get("mark")
    if mark is not None and mark not in MARKS:
        raise KvmError(f"runtime mark {mark!r} is not one of {', '.join(MARKS)}")
    kinds = {"disks": ("pci", "scsi", "ide"), "nics": ("pci",)}
    for kind in ("disks", "nics"):
        for pos, dev in enumerate(runtime[kind]):
            where = f"runtime {kind[:-1]} {pos}"
            if not isinstance(dev, dict):
                raise KvmError(f"{where} must be a mapping")
            dev["uuid"] = hvi.check_uuid(dev.get("uuid"), f"{where} uuid")
            dev["hvinfo"] = hvi.validate(dev.get("hvinfo"), where, kinds[kind])
            if kind == "disks":
                _check_disk(dev, where)
            else:
                _check_nic(dev, where)
    pending = runtime.get("pending", [])
    if not isinstance(pending, list) or not all(isinstance(p, dict) and p.get("kind") in kinds and isinstance(p.get("record"), dict)
                                                for p in pending):
        raise KvmError("runtime field 'pending' is damaged")
    for entry in pending:
        entry["record"]["hvinfo"] = hvi.validate(entry["record"].get("hvinfo"), "pending hotplug", kinds[entry["kind"]])
    if not pending:
        runtime.pop("pending", None)
    ganeti.validate_extras(runtime)  # fixed devices, an adopted QEMU, Ganeti's side data
    BusState.from_devices([*runtime["disks"], *runtime["nics"]])
    return cast(Runtime, runtime)


def to_legacy(runtime: Runtime) -> list[Any]:
    """Downgrade export to Ganeti 2.10-2.15's layout (integer pci slots); see ``ganeti.export``."""
    return ganeti.export(dict(runtime), "2")
