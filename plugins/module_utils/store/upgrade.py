# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime upgrader: every runtime format ever written -> the current one.

Formats:

* version 0, the legacy layout ``[kvm_cmd, [nic, ...], hvparams,
  [[disk, link, uri], ...]]``. NIC and disk dicts carry ``hvinfo`` or an
  integer ``pci`` slot. A ``pci: N`` device becomes a PCI hvinfo whose id is
  ``hot<nic|disk>-<first uuid group>-pci-N``, the id the running QEMU knows.
  Host plumbing options in ``kvm_cmd`` (``-pidfile``, ``-qmp``, ``-monitor``,
  ``-serial``, ``-daemonize``, ``-incoming``) are dropped: they are added
  again per host at launch. hvparams this collection does not know are kept
  aside in ``legacy_hvparams`` so a downgrade export gives them back.
* version 1, a JSON object (see ``runtime.new_runtime``).

A file newer than this code is refused, naming both versions.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.allocator import BusState
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

FORMAT_VERSION = 1
LEGACY_VERSION = 0
# Options of a legacy kvm_cmd that only make sense on the host that wrote it.
_PLUMBING_WITH_ARG = frozenset({"-pidfile", "-qmp", "-monitor", "-serial", "-incoming"})
_PLUMBING_FLAGS = frozenset({"-daemonize"})


def _strip_plumbing(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _PLUMBING_WITH_ARG:
            skip = True
        elif arg not in _PLUMBING_FLAGS:
            out.append(arg)
    return out


def _argv_value(argv: list[str], option: str) -> str | None:
    for pos, arg in enumerate(argv[:-1]):
        if arg == option:
            return argv[pos + 1]
    return None


def _int_or_none(text: str | None) -> int | None:
    head = (text or "").split(",")[0].split("=")[-1].rstrip("M")
    return int(head) if head.isdigit() else None


def _legacy_hvinfo(dev: dict[str, Any], kind: str, driver: str, where: str) -> dict[str, Any]:
    if dev.get("hvinfo"):
        return hvi.validate(dev["hvinfo"], where)
    slot = dev.get("pci")
    if isinstance(slot, bool) or not isinstance(slot, int):
        raise KvmError(f"{where}: neither hvinfo nor an integer pci slot")
    uuid = hvi.check_uuid(dev.get("uuid"), f"{where} uuid")
    return hvi.pci_hvinfo(driver, f"hot{kind}-{uuid.split('-')[0]}-pci-{slot}", hvp.PCI_BUS, slot)


def from_legacy(data: list[Any]) -> dict[str, Any]:
    if len(data) != 4 or not isinstance(data[0], list) or not isinstance(data[1], list) \
            or not isinstance(data[2], dict) or not isinstance(data[3], list):
        raise KvmError("legacy runtime must be [kvm_cmd, [nic, ...], hvparams, [[disk, link, uri], ...]]")
    kvm_cmd, nics_in, hv_in, disks_in = data
    known = {k: v for k, v in hv_in.items() if k in hvp.DEFAULTS and v is not None}
    hvparams = hvp.normalize(known)
    # A pci-slot disk was always a PCI device, whatever disk_type says (the old bug).
    disk_driver = hvp.disk_driver(hvparams)
    if not disk_driver.endswith("-pci"):
        disk_driver = hvp.DISK_DRIVERS["paravirtual"]
    disks = []
    for pos, entry in enumerate(disks_in):
        if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], dict) or not isinstance(entry[1], str):
            raise KvmError(f"legacy disk {pos} must be [disk, link, uri]")
        disk, link, uri = entry
        where = f"legacy disk {pos}"
        disks.append({
            "uuid": hvi.check_uuid(disk.get("uuid"), f"{where} uuid"),
            "path": link,
            "format": disk.get("format", "raw"),
            "mode": disk.get("mode", "rw"),
            "uri": uri,
            "hvinfo": _legacy_hvinfo(disk, "disk", disk_driver, where),
        })
    nics = []
    for pos, nic in enumerate(nics_in):
        where = f"legacy nic {pos}"
        if not isinstance(nic, dict) or not isinstance(nic.get("mac"), str):
            raise KvmError(f"{where} must be a mapping with a mac")
        nics.append({
            "uuid": hvi.check_uuid(nic.get("uuid"), f"{where} uuid"),
            "mac": nic["mac"].lower(),
            "network": nic.get("network"),
            "hvinfo": _legacy_hvinfo(nic, "nic", hvp.nic_driver(hvparams), where),
        })
    name = _argv_value(kvm_cmd, "-name")
    return {
        "version": FORMAT_VERSION,
        "name": (name or "").split(",")[0] or None,
        "uuid": _argv_value(kvm_cmd, "-uuid"),
        "memory": _int_or_none(_argv_value(kvm_cmd, "-m")),
        "vcpus": _int_or_none(_argv_value(kvm_cmd, "-smp")),
        "hvparams": hvparams,
        "legacy_hvparams": {k: v for k, v in hv_in.items() if k not in known},
        "kvm_cmd": _strip_plumbing([str(a) for a in kvm_cmd]),
        "kvm_extra": [],
        "disks": disks,
        "nics": nics,
    }


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    return data


# version found -> function bringing it to the next known version
_UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_v1}


def upgrade(data: Any, fresh: bool = False) -> tuple[dict[str, Any], int]:
    """Return (runtime in the current format, version it was stored in).

    ``data`` is left untouched unless ``fresh`` says the caller just parsed
    it and hands it over (then it is upgraded in place, without a copy).
    """
    if isinstance(data, list):
        return validate(from_legacy(data)), LEGACY_VERSION
    if not isinstance(data, dict):
        raise KvmError("runtime is neither a JSON object nor the legacy list layout")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise KvmError(f"runtime has no integer format version (found {version!r})")
    if version > FORMAT_VERSION:
        raise KvmError(
            f"runtime format version {version} is newer than this collection understands "
            f"(version {FORMAT_VERSION}); upgrade kvmhv.qemu"
        )
    if version not in _UPGRADERS:
        raise KvmError(f"runtime format version {version} is unknown")
    runtime = data if fresh else copy.deepcopy(data)
    for step in sorted(v for v in _UPGRADERS if v >= version):
        runtime = _UPGRADERS[step](runtime)
    runtime["version"] = FORMAT_VERSION
    return validate(runtime), version


def validate(runtime: dict[str, Any]) -> dict[str, Any]:
    """Structural checks so a damaged file fails here, not halfway through a hotplug."""
    for key, kind in (("kvm_cmd", list), ("hvparams", dict), ("disks", list), ("nics", list)):
        if not isinstance(runtime.get(key), kind):
            raise KvmError(f"runtime field {key!r} is missing or not a {kind.__name__}")
    runtime["hvparams"] = hvp.normalize(runtime["hvparams"])
    runtime.setdefault("kvm_extra", [])
    for kind in ("disks", "nics"):
        for pos, dev in enumerate(runtime[kind]):
            where = f"runtime {kind[:-1]} {pos}"
            if not isinstance(dev, dict) or "uuid" not in dev:
                raise KvmError(f"{where} must be a mapping with a uuid")
            dev["hvinfo"] = hvi.validate(dev.get("hvinfo"), where)
    BusState.from_devices([*runtime["disks"], *runtime["nics"]])
    return runtime


def to_legacy(runtime: dict[str, Any]) -> list[Any]:
    """Downgrade export: only possible when every device is a PCI device on pci.0.

    The legacy reader derives ids from the slot, so export a stopped
    instance (a running QEMU knows the current ids).
    """
    for kind in ("disks", "nics"):
        for dev in runtime[kind]:
            info = dev["hvinfo"]
            if not hvi.is_pci(info) or info["bus"] != hvp.PCI_BUS:
                raise KvmError(
                    f"cannot export to the legacy layout: {kind[:-1]} {info['id']} sits on {info['bus']} "
                    f"and the legacy layout only records {hvp.PCI_BUS} slots"
                )
    hvparams = {**runtime["hvparams"], **runtime.get("legacy_hvparams", {})}
    nics = [{"uuid": n["uuid"], "mac": n["mac"], "network": n.get("network"), "pci": hvi.pci_slot(n["hvinfo"])}
            for n in runtime["nics"]]
    disks = [[{"uuid": d["uuid"], "mode": d["mode"], "format": d["format"], "pci": hvi.pci_slot(d["hvinfo"])},
              d["path"], d.get("uri")] for d in runtime["disks"]]
    return [list(runtime["kvm_cmd"]) + list(runtime.get("kvm_extra", [])), nics, hvparams, disks]
