# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime contract as types: what a runtime file holds, key by key.

These are ``TypedDict``s (not classes) because the runtime *is* JSON: the
same dicts are read, checked by the upgrader, handed to QEMU and written back.
Every key is optional to the type checker; ``store.upgrade.validate`` is the
one place that decides which keys a stored record must have, and refuses a
key declared here for no record (``keys_of``): this file is the one list.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# The placement of one device: everything its -device needs besides backend
# links. PCI devices have addr; SCSI devices channel/scsi-id/lun; IDE unit.
# Controllers, bridges and ports add their own properties (chassis, ...).
HvInfo = TypedDict(
    "HvInfo",
    {
        "driver": str,
        "id": str,
        "bus": str,
        "addr": str,
        "multifunction": bool,
        "channel": int,
        "scsi-id": int,
        "lun": int,
        "unit": int,
        "chassis_nr": int,
        "chassis": int,
        "port": int,
        "shpc": bool,
        "io-reserve": int,
        "mem-reserve": int,
        "pref64-reserve": int,
    },
    total=False,
)


class Network(TypedDict, total=False):
    """A NIC's backend link: a tap (opened by the module) or QEMU's user networking."""

    type: str
    ifname: str
    bridge: str


class DiskRecord(TypedDict, total=False):
    uuid: str
    path: str | None  # a host file or block device the module opens and hands over
    uri: str | None  # a network disk QEMU reaches itself (iscsi://, nbd://)
    format: str
    mode: str
    type: str  # paravirtual, scsi-hd, scsi-cd, ... (the instance's disk_type when omitted)
    hvinfo: HvInfo
    ganeti: dict[str, object]  # fields of a Ganeti disk kept for a downgrade export


class NicRecord(TypedDict, total=False):
    uuid: str
    mac: str
    network: Network | None
    uuid_from_mac: bool  # a legacy NIC without uuid: derived from its MAC
    hvinfo: HvInfo
    ganeti: dict[str, object]


class Controller(TypedDict, total=False):
    """A bus provider the instance's devices sit on: SCSI controller, pci-bridge, pcie-root-port."""

    kind: str  # scsi, pci-bridge, pcie-root-port
    hvinfo: HvInfo


class CreatedImage(TypedDict):
    """An image a copy_storage target made: deleted on ``state=absent`` only while it is still that very file."""

    path: str
    dev: int
    ino: int
    token: str | None  # written into its extended attributes; None where the filesystem has none


class FixedDevice(TypedDict, total=False):
    """A device QEMU placed itself (no recorded address, read from Ganeti): a NIC or a disk (``model.fixed``)."""

    kind: Literal["disk", "nic"]
    uuid: str
    ganeti: dict[str, object]  # fields of a Ganeti device kept for a downgrade export
    # a NIC: its MAC, -device driver, backend, and the netdev id its tap is keyed by
    mac: str
    driver: str  # a disk's too, when it is rendered as a -device
    network: Network | None
    uuid_from_mac: bool
    netdev: str
    # a disk: as a DiskRecord, rendered as a -device (driver, cache) or a -drive (drive options, position at)
    path: str | None
    uri: str | None
    format: str
    mode: str
    type: str
    render: Literal["device", "drive"]
    cache: str
    drive: dict[str, str]
    at: int


class Adopted(TypedDict, total=False):
    """A QEMU started by something else (``ops.adopt``): its runtime file, QMP socket, pid file and start time."""

    runtime: str | None
    qmp: str
    pidfile: str
    started: int | None


class GanetiSide(TypedDict, total=False):
    """What reading a Ganeti runtime keeps beside the runtime (``store.ganeti.read``; ``validate`` checks ``notes``)."""

    layout: str  # the layout the file had (store.ganeti.read.layout_of)
    plumbing: list[list[str]]  # the host plumbing dropped from kvm_cmd, as option groups, for an export
    notes: list[str]  # what reading it changed or assumed
    reservations_default: bool  # the file predates kvm_pci_reservations: adoption packs new devices after QEMU's own


# A runtime's mark: stopped on purpose, or a migration target not yet confirmed.
STOPPED, INCOMING = "stopped", "incoming"


class Runtime(TypedDict, total=False):
    version: int
    name: str | None
    uuid: str | None
    memory: int | None
    vcpus: int | None
    hvparams: dict[str, Any]
    legacy_hvparams: dict[str, Any]
    kvm_cmd: list[str]
    kvm_extra: list[str]
    controllers: list[Controller]
    disks: list[DiskRecord]
    nics: list[NicRecord]
    fixed: list[FixedDevice]  # devices QEMU placed itself (no address): kept in order, not hotpluggable (qemu.fixed)
    mark: str  # "stopped": stopped on purpose; "incoming": a migration target not yet confirmed
    created_images: list[CreatedImage]  # a copy_storage target's own images {path, dev, ino, token}, while marked incoming
    adopted: Adopted
    ganeti: GanetiSide  # read from Ganeti (store.ganeti)


def keys_of(record_type: Any) -> frozenset[str]:
    """The keys a TypedDict above declares (what ``store.upgrade.validate`` lets a stored record hold)."""
    return frozenset(record_type.__annotations__)
