# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hvinfo model: one dict per device that fully describes its placement.

The same dict gives the ``-device`` option (as JSON, which QEMU >= 6.2 reads
with the same types as QMP) and the typed ``device_add`` arguments, so the
command line and a hotplug can never disagree. hvinfo read from a runtime
file is checked here before anything reaches QEMU: known keys only, each
with its type and range, the driver from the driver tables, the bus and
address in QEMU's grammar. A file cannot add a property or smuggle one in a
value.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import HvInfo

# QEMU's rule for a device/node/netdev id: a letter first, then letters,
# digits, '.', '_' or '-'; block node names are capped at 32 characters.
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,31}\Z")
ID_MAX = 32
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
# Bus names the collection (and Ganeti) use: the root PCI bus, bridges and
# root ports (named after their id), SCSI controller buses, the IDE buses.
PCI_BUS_RE = re.compile(r"^pcie?\.[0-9]{1,3}\Z")
SCSI_BUS_RE = re.compile(r"^scsi[0-9]{0,3}\.0\Z")
IDE_BUS_RE = re.compile(r"^ide\.[0-5]\Z")
# A PCI address: slot (0x00-0x1f), optionally .function (0-7).
ADDR_RE = re.compile(r"^0x([0-9a-fA-F]{1,2})(?:\.(?:0x)?([0-7]))?\Z")


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_addr(value: Any) -> bool:
    match = ADDR_RE.match(value) if isinstance(value, str) else None
    return match is not None and int(match.group(1), 16) <= 0x1F


# key -> (check, what a good value looks like)
_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "addr": (_is_addr, "a PCI address 0x00-0x1f[.0-7]"),
    "multifunction": (_is_bool, "true or false"),
    "channel": (_int_in(0, 0), "0"),
    "scsi-id": (_int_in(0, 255), "an integer 0-255"),
    "lun": (_int_in(0, 255), "an integer 0-255"),
    "unit": (_int_in(0, 1), "0 or 1"),
    "chassis_nr": (_int_in(1, 255), "an integer 1-255"),
    "chassis": (_int_in(1, 255), "an integer 1-255"),
    "port": (_int_in(0, 255), "an integer 0-255"),
    "shpc": (_is_bool, "true or false"),
    "io-reserve": (_int_in(0, 65535), "an integer 0-65535"),
    "mem-reserve": (_int_in(0, 1 << 40), "a size in bytes"),
    "pref64-reserve": (_int_in(0, 1 << 40), "a size in bytes"),
}
# driver kind -> keys a stored hvinfo must have / may have
_REQUIRED = {
    "pci": ("driver", "id", "bus", "addr"),
    "scsi": ("driver", "id", "bus", "channel", "scsi-id", "lun"),
    "ide": ("driver", "id", "bus", "unit"),
    "controller": ("driver", "id", "bus"),
    "pci-bridge": ("driver", "id", "bus", "addr", "chassis_nr"),
    "pcie-root-port": ("driver", "id", "bus", "addr", "chassis", "port"),
}
_OPTIONAL = {
    "controller": ("addr", "multifunction"),
    "pci": ("multifunction",),
    "pci-bridge": ("shpc", "multifunction", "mem-reserve", "pref64-reserve"),
    "pcie-root-port": ("multifunction", "io-reserve"),
}
# Key order of a rendered device: stable, so command lines are comparable.
KEY_ORDER = ("driver", "id", "bus", "addr", "multifunction", "unit", "channel", "scsi-id", "lun",
             "chassis_nr", "chassis", "port", "shpc", "io-reserve", "mem-reserve", "pref64-reserve")


def driver_kind(driver: str) -> str | None:
    """pci, scsi, ide, controller, pci-bridge or pcie-root-port; None for a driver we do not know."""
    if driver in hvp.SCSI_DEVICE_DRIVERS:
        return "scsi"
    if driver in hvp.IDE_DEVICE_DRIVERS:
        return "ide"
    if driver in hvp.CONTROLLER_DRIVERS:
        return "controller"
    if driver in ("pci-bridge", "pcie-root-port"):
        return driver
    if driver in hvp.PCI_DEVICE_DRIVERS:
        return "pci"
    return None


def check_id(dev_id: Any) -> str:
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
    """One value for QEMU's ``key=value,...`` (QemuOpts) syntax: commas doubled."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if any(ord(ch) < 0x20 for ch in text):
        raise KvmError(f"value {text!r} contains a control character")
    return text.replace(",", ",,")


def options(head: str | None, props: Mapping[str, Any]) -> str:
    """Render ``head,k=v,...`` for a QemuOpts option, every value escaped; None values are skipped."""
    parts = [escape(head)] if head is not None else []
    parts += [f"{key}={escape(val)}" for key, val in props.items() if val is not None]
    return ",".join(parts)


def device_args(hvinfo: HvInfo, **extra: Any) -> dict[str, object]:
    """Typed arguments of the device (QMP ``device_add``, and ``-device`` as JSON); None extras are dropped."""
    info: Mapping[str, object] = hvinfo
    args = {key: info[key] for key in KEY_ORDER if key in info}
    args.update({k: v for k, v in extra.items() if v is not None})
    return args


def pci_hvinfo(driver: str, dev_id: str, bus: str, slot: int, function: int | None = None) -> HvInfo:
    addr = hex(slot) if function is None else f"{hex(slot)}.{function}"
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "addr": addr}


def scsi_hvinfo(driver: str, dev_id: str, bus: str, target: int) -> HvInfo:
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "channel": 0, "scsi-id": target, "lun": 0}


def ide_hvinfo(driver: str, dev_id: str, bus: str, unit: int) -> HvInfo:
    return {"driver": driver, "id": check_id(dev_id), "bus": bus, "unit": unit}


class PciAddr(NamedTuple):
    """Where a PCI device sits on its bus; QEMU reports it as ``devfn``."""

    slot: int
    function: int

    @property
    def devfn(self) -> int:
        return self.slot << 3 | self.function


def pci_addr(hvinfo: Mapping[str, Any]) -> PciAddr | None:
    """The address of a PCI hvinfo, None for non-PCI devices or an unaddressed controller."""
    addr = hvinfo.get("addr")
    if addr is None:
        return None
    match = ADDR_RE.match(str(addr))
    if not match:
        raise KvmError(f"device {hvinfo.get('id')}: bad PCI addr {addr!r}")
    return PciAddr(int(match.group(1), 16), int(match.group(2) or 0))


def pci_slot(hvinfo: Mapping[str, Any]) -> int | None:
    """The slot number of a PCI hvinfo, None for non-PCI devices."""
    addr = pci_addr(hvinfo)
    return None if addr is None else addr.slot


def is_pci(hvinfo: Mapping[str, Any]) -> bool:
    return "addr" in hvinfo


def is_scsi(hvinfo: Mapping[str, Any]) -> bool:
    return "scsi-id" in hvinfo


def where(hvinfo: Mapping[str, Any]) -> str:
    """A short human description of the address: ``pci.0 slot 0x10``, ``scsi.0 scsi-id 2``."""
    if "addr" in hvinfo:
        return f"{hvinfo['bus']} slot {hvinfo['addr']}"
    if "scsi-id" in hvinfo:
        return f"{hvinfo['bus']} scsi-id {hvinfo['scsi-id']}"
    if "unit" in hvinfo:
        return f"{hvinfo['bus']} unit {hvinfo['unit']}"
    return f"{hvinfo.get('bus')} (placed by QEMU)"


def validate(hvinfo: Any, where_: str, kinds: tuple[str, ...] | None = None) -> HvInfo:
    """Check a stored hvinfo strictly; return a plain copy.

    ``kinds`` limits the driver kinds accepted here (a disk cannot carry a
    NIC driver, a controller list cannot hold a disk).
    """
    if not isinstance(hvinfo, dict):
        raise KvmError(f"{where_}: hvinfo must be a mapping")
    driver = hvinfo.get("driver")
    kind = driver_kind(driver) if isinstance(driver, str) else None
    if kind is None:
        raise KvmError(f"{where_}: hvinfo driver {driver!r} is not a driver this collection knows")
    if kinds is not None and kind not in kinds:
        raise KvmError(f"{where_}: hvinfo driver {driver} does not belong here")
    required, optional = _REQUIRED[kind], _OPTIONAL.get(kind, ())
    missing = [key for key in required if key not in hvinfo]
    if missing:
        raise KvmError(f"{where_}: hvinfo lacks {', '.join(missing)}")
    unknown = sorted(set(hvinfo) - set(required) - set(optional))
    if unknown:
        raise KvmError(f"{where_}: hvinfo has unknown key(s) {', '.join(map(repr, unknown))}")
    try:
        check_id(hvinfo["id"])
    except KvmError as err:
        raise KvmError(f"{where_}: {err.msg}") from None
    bus = hvinfo["bus"]
    bus_re = {"scsi": SCSI_BUS_RE, "ide": IDE_BUS_RE}.get(kind, PCI_BUS_RE)
    if not isinstance(bus, str) or not bus_re.match(bus):
        raise KvmError(f"{where_}: hvinfo bus {bus!r} is not a {kind} bus name")
    for key, value in hvinfo.items():
        if key in _VALUE_RULES:
            check, want = _VALUE_RULES[key]
            if not check(value):
                raise KvmError(f"{where_}: hvinfo {key} {value!r} must be {want}")
    return cast(HvInfo, {key: hvinfo[key] for key in KEY_ORDER if key in hvinfo})
