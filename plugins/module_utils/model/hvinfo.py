# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hvinfo model: one dict per device that fully describes its ``-device``.

The same dict renders to a command-line option (every value escaped so no
input can add a property) and to typed QMP ``device_add`` arguments (ints stay
ints; QEMU >= 9.2 rejects wrongly typed arguments).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError

# QEMU's rule for a device/node/netdev id: a letter first, then letters,
# digits, '.', '_' or '-'; block node names are capped at 32 characters.
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,31}$")
ID_MAX = 32
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Key order of a rendered -device: stable, so command lines are comparable.
KEY_ORDER = ("id", "bus", "addr", "unit", "channel", "scsi-id", "lun")
INT_KEYS = frozenset({"channel", "scsi-id", "lun", "unit"})
PCI_KEYS = ("driver", "id", "bus", "addr")
SCSI_KEYS = ("driver", "id", "bus", "channel", "scsi-id", "lun")


def check_id(dev_id: str) -> str:
    if not isinstance(dev_id, str) or not ID_RE.match(dev_id):
        raise KvmError(
            f"invalid device id {dev_id!r}: it must start with a letter, hold at most {ID_MAX} "
            "letters, digits, '.', '_' or '-'"
        )
    return dev_id


def check_uuid(value: Any, what: str = "uuid") -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise KvmError(f"{what} {value!r} is not a UUID (8-4-4-4-12 hex digits)")
    return value.lower()


def make_id(kind: str, uuid: str, taken: Iterable[str]) -> str:
    """``<kind>-<first uuid group>``, lengthened with further uuid digits on collision.

    ``taken`` are the ids already used in the instance. Two devices whose
    uuids agree on every digit that fits in 32 characters are an error, never
    a duplicate id.
    """
    digits = check_uuid(uuid).replace("-", "")
    used = set(taken)
    for length in range(8, min(len(digits), ID_MAX - len(kind) - 1) + 1):
        candidate = check_id(f"{kind}-{digits[:length]}")
        if candidate not in used:
            return candidate
    raise KvmError(f"cannot make a unique {kind} id for uuid {uuid}: another device has (almost) the same uuid")


def escape(value: Any) -> str:
    """One option value for QEMU's ``key=value,...`` syntax: commas doubled."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if any(ord(ch) < 0x20 for ch in text):
        raise KvmError(f"value {text!r} contains a control character")
    return text.replace(",", ",,")


def options(head: str | None, props: Mapping[str, Any]) -> str:
    """Render ``head,k=v,...`` with every value escaped; None values are skipped."""
    parts = [escape(head)] if head is not None else []
    parts += [f"{key}={escape(val)}" for key, val in props.items() if val is not None]
    return ",".join(parts)


def _ordered(hvinfo: Mapping[str, Any]) -> dict[str, Any]:
    props = {key: hvinfo[key] for key in KEY_ORDER if key in hvinfo}
    props.update({k: v for k, v in hvinfo.items() if k not in props and k != "driver"})
    return props


def device_option(hvinfo: Mapping[str, Any], **extra: Any) -> str:
    """The ``-device`` argument for ``hvinfo`` plus backend links (drive, netdev, mac)."""
    return options(hvinfo["driver"], {**_ordered(hvinfo), **extra})


def device_add_args(hvinfo: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """Typed QMP ``device_add`` arguments for the same device."""
    args: dict[str, Any] = {"driver": hvinfo["driver"], **_ordered(hvinfo)}
    args.update({k: v for k, v in extra.items() if v is not None})
    for key in INT_KEYS & args.keys():
        args[key] = int(args[key])
    return args


def pci_hvinfo(driver: str, dev_id: str, bus: str, slot: int) -> dict[str, Any]:
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "addr": hex(slot)}


def scsi_hvinfo(driver: str, dev_id: str, bus: str, target: int) -> dict[str, Any]:
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "channel": 0, "scsi-id": target, "lun": 0}


def ide_hvinfo(driver: str, dev_id: str, bus: str, unit: int) -> dict[str, Any]:
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "unit": unit}


def pci_slot(hvinfo: Mapping[str, Any]) -> int | None:
    """The slot number of a PCI hvinfo, None for non-PCI devices."""
    if "addr" not in hvinfo:
        return None
    addr = str(hvinfo["addr"]).split(".", maxsplit=1)[0]
    try:
        return int(addr, 16)
    except ValueError:
        raise KvmError(f"device {hvinfo.get('id')}: bad PCI addr {hvinfo['addr']!r}") from None


def is_pci(hvinfo: Mapping[str, Any]) -> bool:
    return "addr" in hvinfo


def is_scsi(hvinfo: Mapping[str, Any]) -> bool:
    return "scsi-id" in hvinfo


def validate(hvinfo: Any, where: str) -> dict[str, Any]:
    """Check a stored hvinfo has the keys its kind needs; return a plain copy."""
    if not isinstance(hvinfo, dict):
        raise KvmError(f"{where}: hvinfo must be a mapping")
    need = PCI_KEYS if "addr" in hvinfo else SCSI_KEYS if "scsi-id" in hvinfo else ("driver", "id", "bus")
    missing = [key for key in need if key not in hvinfo]
    if missing:
        raise KvmError(f"{where}: hvinfo lacks {', '.join(missing)}")
    check_id(hvinfo["id"])
    if is_pci(hvinfo):
        pci_slot(hvinfo)
    for key in INT_KEYS & hvinfo.keys():
        if isinstance(hvinfo[key], bool) or not isinstance(hvinfo[key], int):
            raise KvmError(f"{where}: hvinfo {key} must be an integer")
    return dict(hvinfo)
