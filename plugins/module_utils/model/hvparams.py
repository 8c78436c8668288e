# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hypervisor parameters: the schema, the defaults and the driver tables.

This is the one place that maps ``disk_type``/``nic_type``/
``scsi_controller_type`` to QEMU drivers and knows each controller's target
limit. Everything else asks these functions.
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

DISK_DRIVERS: dict[str, str] = {
    "paravirtual": "virtio-blk-pci",
    "scsi-hd": "scsi-hd",
    "scsi-block": "scsi-block",
    "scsi-generic": "scsi-generic",
    "scsi-cd": "scsi-cd",
    "ide": "ide-hd",
}
# The old ``-drive if=scsi`` no longer exists in QEMU; ``scsi`` means scsi-hd.
DISK_TYPE_ALIASES: dict[str, str] = {"scsi": "scsi-hd"}
SCSI_DISK_TYPES = frozenset({"scsi-hd", "scsi-block", "scsi-generic", "scsi-cd"})
PASSTHROUGH_DISK_TYPES = frozenset({"scsi-block", "scsi-generic"})

NIC_DRIVERS: dict[str, str] = {
    "paravirtual": "virtio-net-pci",
    "e1000": "e1000",
    "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci",
    "pcnet": "pcnet",
    "i82551": "i82551",
    "i82557b": "i82557b",
    "i82559er": "i82559er",
}

# controller type -> (QEMU driver, highest scsi-id a disk may use)
SCSI_CONTROLLERS: dict[str, tuple[str, int]] = {
    "lsi": ("lsi53c895a", 6),
    "megasas": ("megasas", 63),
    "virtio-scsi-pci": ("virtio-scsi-pci", 255),
}
SCSI_CONTROLLER_ID = "scsi"
DRIVER_DISK_TYPES = {driver: kind for kind, driver in DISK_DRIVERS.items()}
# Every driver a stored hvinfo may name, by where it sits.
SCSI_DEVICE_DRIVERS = frozenset(DISK_DRIVERS[t] for t in SCSI_DISK_TYPES)
IDE_DEVICE_DRIVERS = frozenset({"ide-hd", "ide-cd"})
CONTROLLER_DRIVERS = frozenset(driver for driver, _limit in SCSI_CONTROLLERS.values())
PCI_DEVICE_DRIVERS = frozenset({DISK_DRIVERS["paravirtual"], *NIC_DRIVERS.values()})
SCSI_BUS = "scsi.0"
PCI_BUS = "pci.0"
PCIE_BUS = "pcie.0"
PCI_LAST_SLOT = 0x1F
Q35_LAST_SLOT = 0x1E  # 0x1f of pcie.0 is the ICH9 function block
IDE_SLOTS: tuple[tuple[str, int], ...] = (("ide.0", 0), ("ide.0", 1), ("ide.1", 0), ("ide.1", 1))

DEFAULTS: dict[str, Any] = {
    "disk_type": "paravirtual",
    "nic_type": "paravirtual",
    "scsi_controller_type": "lsi",
    "kvm_pci_reservations": 16,
    "pci_hotplug_slots": 32,
    "machine_type": "pc",
    "accel": "kvm",
    "cpu_type": None,
    "kernel_path": None,
    "initrd_path": None,
    "kernel_args": None,
    "kvm_extra": None,
}
_MACHINE_RE = re.compile(r"^(pc|q35|pc-(i440fx|q35)-[0-9]{1,2}\.[0-9]{1,2})\Z")
MAX_HOTPLUG_SLOTS = 240
# -cpu is not QemuOpts: a comma always separates, so the value must follow
# the grammar MODEL[,FEATURE...] where a feature is +flag, -flag or
# flag=on|off|<number>; nothing else (no model-id=..., no escaping tricks).
_CPU_MODEL = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_CPU_FEATURE = r"(?:[+-][a-z0-9][a-z0-9_.-]{0,63}|[a-z0-9][a-z0-9_.-]{0,63}=(?:on|off|true|false|[0-9]{1,10}|0x[0-9a-fA-F]{1,8}))"
_CPU_RE = re.compile(rf"^{_CPU_MODEL}(?:,{_CPU_FEATURE})*\Z")
_CHOICES: dict[str, tuple[str, ...]] = {
    "disk_type": tuple(DISK_DRIVERS) + tuple(DISK_TYPE_ALIASES),
    "nic_type": tuple(NIC_DRIVERS),
    "scsi_controller_type": tuple(SCSI_CONTROLLERS),
    "accel": ("kvm", "tcg"),
}
# Lowest reservation that still leaves QEMU room for the host bridge, the
# PIIX function block, the SCSI controller and one more automatic device.
MIN_PCI_RESERVATIONS = 4


def _check_str(key: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise KvmError(f"hvparam {key} must be a string, got {type(value).__name__}")


def normalize(hvparams: Mapping[str, Any] | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``hvparams`` over ``base`` (or DEFAULTS), validate and return a new dict.

    Unknown keys, unknown values and wrong types are KvmError. ``scsi`` is
    rewritten to ``scsi-hd``.
    """
    merged = dict(DEFAULTS if base is None else base)
    for key, value in (hvparams or {}).items():
        if key not in DEFAULTS:
            raise KvmError(f"unknown hvparam {key!r}; known: {', '.join(sorted(DEFAULTS))}")
        merged[key] = value
    for key, choices in _CHOICES.items():
        if merged[key] not in choices:
            raise KvmError(f"hvparam {key}={merged[key]!r} is not one of: {', '.join(choices)}")
    merged["disk_type"] = DISK_TYPE_ALIASES.get(merged["disk_type"], merged["disk_type"])
    res = merged["kvm_pci_reservations"]
    if isinstance(res, str) and res.strip().isdigit():
        res = int(res)
    if isinstance(res, bool) or not isinstance(res, int) or not MIN_PCI_RESERVATIONS <= res <= PCI_LAST_SLOT + 1:
        raise KvmError(
            f"hvparam kvm_pci_reservations={merged['kvm_pci_reservations']!r} must be an integer "
            f"from {MIN_PCI_RESERVATIONS} to {PCI_LAST_SLOT + 1} (pci.0 has {PCI_LAST_SLOT + 1} slots)"
        )
    merged["kvm_pci_reservations"] = res
    slots = merged["pci_hotplug_slots"]
    if isinstance(slots, str) and slots.strip().isdigit():
        slots = int(slots)
    if isinstance(slots, bool) or not isinstance(slots, int) or not 0 <= slots <= MAX_HOTPLUG_SLOTS:
        raise KvmError(f"hvparam pci_hotplug_slots={merged['pci_hotplug_slots']!r} must be an integer from 0 to {MAX_HOTPLUG_SLOTS}")
    merged["pci_hotplug_slots"] = slots
    machine = merged["machine_type"]
    if not isinstance(machine, str) or not _MACHINE_RE.match(machine):
        raise KvmError(
            f"hvparam machine_type={machine!r} is not supported: use pc, q35, pc-i440fx-X.Y or pc-q35-X.Y"
        )
    if is_q35(merged) and merged["disk_type"] == "ide":
        raise KvmError("hvparam disk_type ide needs the pc machine (q35 has no IDE bus); use a SCSI or paravirtual disk_type")
    for key in ("cpu_type", "kernel_path", "initrd_path", "kernel_args", "kvm_extra"):
        _check_str(key, merged[key])
        if merged[key] == "":
            merged[key] = None  # Ganeti's way of saying "none"
    cpu = merged["cpu_type"]
    if cpu is not None and not _CPU_RE.match(cpu):
        raise KvmError(
            f"hvparam cpu_type={cpu!r} is not MODEL[,+flag|,-flag|,flag=on|off|NUMBER...] "
            "(letters, digits, '.', '_', '-'); QEMU's -cpu cannot escape anything else"
        )
    for key in ("kernel_path", "initrd_path", "kernel_args"):
        if merged[key] is not None and any(ord(ch) < 0x20 for ch in merged[key]):
            raise KvmError(f"hvparam {key}={merged[key]!r} contains a control character")
    for key in ("kernel_path", "initrd_path"):
        if merged[key] is not None and not merged[key].startswith("/"):
            raise KvmError(f"hvparam {key}={merged[key]!r} must be an absolute path")
    if merged["initrd_path"] and not merged["kernel_path"]:
        raise KvmError("hvparam initrd_path needs kernel_path")
    extra_args(merged)
    return merged


def extra_args(hvparams: Mapping[str, Any]) -> list[str]:
    """``kvm_extra`` split like a shell would, without ever running one."""
    try:
        return shlex.split(hvparams.get("kvm_extra") or "")
    except ValueError as err:
        raise KvmError(f"hvparam kvm_extra cannot be split: {err}") from None


def is_q35(hvparams: Mapping[str, Any]) -> bool:
    return "q35" in str(hvparams["machine_type"])


def root_bus(hvparams: Mapping[str, Any]) -> str:
    return PCIE_BUS if is_q35(hvparams) else PCI_BUS


def is_scsi(hvparams: Mapping[str, Any]) -> bool:
    return hvparams["disk_type"] in SCSI_DISK_TYPES


def disk_driver(hvparams: Mapping[str, Any], disk_type: str | None = None) -> str:
    return DISK_DRIVERS[disk_type or hvparams["disk_type"]]


def nic_driver(hvparams: Mapping[str, Any]) -> str:
    return NIC_DRIVERS[hvparams["nic_type"]]


def scsi_controller(hvparams: Mapping[str, Any]) -> tuple[str, int]:
    """(QEMU driver, highest usable scsi-id) of the instance's SCSI controller."""
    return SCSI_CONTROLLERS[hvparams["scsi_controller_type"]]
