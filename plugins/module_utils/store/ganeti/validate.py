# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strict checks of what reading a Ganeti runtime adds to a runtime: ``fixed`` devices, an ``adopted`` QEMU,
Ganeti's side data.

Kept apart from the reader because it runs on every runtime file read from
the runtime directory (``store.upgrade.validate``), not only on Ganeti's:
a stored file is checked again, whoever wrote it, before its values reach
a QEMU command line.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import KINDS

_DRIVE_KEYS = frozenset({"if", "index", "bus", "unit", "cache", "aio", "discard", "serial", "werror", "rerror",
                         "detect-zeroes", "copy-on-read", "snapshot"})
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
_FIXED_NIC_DRIVERS = frozenset(hvp.NIC_DRIVERS.values())
_FIXED_DISK_DRIVERS = frozenset({*hvp.DISK_DRIVERS.values()})
CACHE_MODES = ("none", "writeback", "writethrough", "directsync", "unsafe", "default")


def _abs_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(ord(c) < 0x20 for c in value):
        raise KvmError(f"{what} {value!r} must be an absolute path")
    return value


def validate_extras(runtime: Mapping[str, Any]) -> None:
    """Strict checks of ``fixed``, ``adopted`` and the ``ganeti`` side data (called by ``upgrade.validate``)."""
    for key in ("ganeti", "legacy_hvparams"):
        if key in runtime and not isinstance(runtime[key], dict):
            raise KvmError(f"runtime field {key!r} must be a mapping")
    notes = runtime.get("ganeti", {}).get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise KvmError("runtime field 'ganeti.notes' must be a list of strings")
    for kind in KINDS:
        for pos, dev in enumerate(runtime.get(kind.name, [])):
            if "ganeti" in dev and not isinstance(dev["ganeti"], dict):
                raise KvmError(f"runtime {kind.noun} {pos}: field 'ganeti' must be a mapping")
    adopted = runtime.get("adopted")
    if adopted is not None:
        if not isinstance(adopted, dict) or set(adopted) - {"runtime", "qmp", "pidfile", "started"}:
            raise KvmError("runtime field 'adopted' must be a mapping of runtime, qmp, pidfile and started")
        started = adopted.get("started")
        if started is not None and (isinstance(started, bool) or not isinstance(started, int) or started < 0):
            raise KvmError("runtime adopted started must be a start time (a non-negative integer)")
        for key in ("qmp", "pidfile"):
            _abs_path(adopted.get(key), f"runtime adopted {key}")
        if adopted.get("runtime") is not None:
            _abs_path(adopted["runtime"], "runtime adopted runtime")
    fixed = runtime.get("fixed", [])
    if not isinstance(fixed, list):
        raise KvmError("runtime field 'fixed' must be a list")
    netdevs: set[str] = set()
    for pos, dev in enumerate(fixed):
        where = f"runtime fixed device {pos}"
        if not isinstance(dev, dict) or dev.get("kind") not in ("disk", "nic"):
            raise KvmError(f"{where} must be a mapping with kind disk or nic")
        dev["uuid"] = hvi.check_uuid(dev.get("uuid"), f"{where} uuid")
        if "ganeti" in dev and not isinstance(dev["ganeti"], dict):
            raise KvmError(f"{where}: field 'ganeti' must be a mapping")
        if dev["kind"] == "nic":
            if not isinstance(dev.get("mac"), str) or not devices.MAC_RE.match(dev["mac"]):
                raise KvmError(f"{where}: mac {dev.get('mac')!r} is not a MAC address")
            if dev.get("driver") not in _FIXED_NIC_DRIVERS:
                raise KvmError(f"{where}: driver {dev.get('driver')!r} is not a NIC driver this collection knows")
            hvi.check_id(dev.get("netdev"))
            if dev["netdev"] in netdevs:
                raise KvmError(f"{where}: netdev {dev['netdev']} is used twice")
            netdevs.add(dev["netdev"])
            try:
                dev["network"] = devices.network_record(dev.get("network"))
            except KvmError as err:
                raise KvmError(f"{where}: {err.msg}") from None
            continue
        if dev.get("path") is not None:
            _abs_path(dev["path"], f"{where} path")
        if dev.get("uri") is not None and not isinstance(dev["uri"], str):
            raise KvmError(f"{where}: uri must be a string")
        if dev.get("format", "raw") not in devices.DISK_FORMATS or dev.get("mode", "rw") not in devices.DISK_MODES:
            raise KvmError(f"{where}: format must be one of {', '.join(devices.DISK_FORMATS)} and mode rw or ro")
        dev.setdefault("format", "raw")
        dev.setdefault("mode", "rw")
        if dev.get("type") is not None and dev["type"] not in hvp.DISK_DRIVERS:
            raise KvmError(f"{where}: type {dev['type']!r} is not a disk_type")
        if dev.get("render") == "device":
            if dev.get("driver") not in _FIXED_DISK_DRIVERS:
                raise KvmError(f"{where}: driver {dev.get('driver')!r} is not a disk driver this collection knows")
            if dev.get("cache") is not None and dev["cache"] not in CACHE_MODES:
                raise KvmError(f"{where}: cache {dev['cache']!r} is not one of {', '.join(CACHE_MODES)}")
        elif dev.get("render") == "drive":
            drive = dev.get("drive")
            if not isinstance(drive, dict) or not drive:
                raise KvmError(f"{where}: drive options must be a mapping")
            for key, value in drive.items():
                if key not in _DRIVE_KEYS or not isinstance(value, str) or not _SAFE_VALUE.match(value):
                    raise KvmError(f"{where}: drive option {key}={value!r} is not one this collection passes on")
            at = dev.get("at")
            if at is not None and (isinstance(at, bool) or not isinstance(at, int) or not 1 <= at <= len(runtime["kvm_cmd"])):
                raise KvmError(f"{where}: position {at!r} is not inside kvm_cmd")
        else:
            raise KvmError(f"{where}: render must be device or drive")
