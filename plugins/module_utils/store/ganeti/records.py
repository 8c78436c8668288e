# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ganeti's NIC and disk dicts -> this collection's records, or fixed devices QEMU placed itself.

Kept apart from the reader because it is the one place that knows Ganeti's
device fields and what each era wrote:

A disk or NIC with ``hvinfo`` or ``pci`` is a normal record (hotpluggable,
its id kept exactly as the running QEMU knows it). One with neither was
placed by QEMU: it goes to the runtime's ``fixed`` list (``model.fixed``;
``qemu.fixed`` for how a start renders it so QEMU places it the same way),
kept in order, not hotpluggable, migratable.

A NIC without a uuid (before Ganeti 2.8) gets one derived from its MAC
(``uuid_from_mac: true``, and a note). Its backend link comes from
``nicparams``: a bridged NIC's ``link`` is its bridge, on a tap the module
names ``gnt<12 uuid hex digits>`` on whichever host starts it. Every field of
Ganeti's NIC and disk dicts this collection has no use for (``ip``,
``network``, ``netinfo``, ``nicparams``, ``dev_type``, ``logical_id``,
``children``, ``params``, ``iv_name``, ``size``, timestamps, ...) is kept
in the record's ``ganeti`` dict, so the export gives it back. A disk keeps
both its ``link`` and its userspace ``uri``: when the uri is one this
collection can hand to QEMU (``iscsi://``, ``nbd://``), QEMU reaches the disk
through it and the link waits in ``ganeti.link``; otherwise the link is the
disk's ``path`` and the uri is kept beside it.
"""

from __future__ import annotations

from typing import Any, Mapping, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.fixed import reachable
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import HvInfo, Network

_IFNAME_PREFIX = "gnt"
# Ganeti's nic_type / disk_type -> the -device driver it used (a literal type otherwise).
_GANETI_NIC_DRIVER = {"paravirtual": "virtio-net-pci"}
_GANETI_DISK_DRIVER = {"paravirtual": "virtio-blk-pci"}


def tap_name(dev_uuid: str) -> str:
    """The tap a start names for an imported NIC: ``gnt`` + 12 hex digits of its uuid (15 characters)."""
    return _IFNAME_PREFIX + dev_uuid.replace("-", "")[:12]


def _network(nic: Mapping[str, Any], dev_uuid: str) -> Network | None:
    net = nic.get("network")
    if isinstance(net, dict):  # this collection's own record (its early legacy export)
        return cast(Network, net)  # checked like every NIC's network by store.upgrade.validate
    params: dict[str, Any] = nic["nicparams"] if isinstance(nic.get("nicparams"), dict) else {}
    mode = params.get("mode") or ("bridged" if nic.get("bridge") else None)
    if mode is None:
        return None
    record: Network = {"type": "tap", "ifname": tap_name(dev_uuid)}
    bridge = params.get("link") or nic.get("bridge") if mode == "bridged" else None
    if bridge:
        record["bridge"] = bridge
    return devices.network_record(record)


def _side(dev: Mapping[str, object], drop: tuple[str, ...]) -> dict[str, object]:
    return {k: v for k, v in dev.items() if k not in drop}


def _pci_hvinfo(dev: Mapping[str, Any], kind: str, driver: str, dev_uuid: str, where: str) -> HvInfo:
    slot = dev["pci"]
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= hvp.PCI_LAST_SLOT:
        raise KvmError(f"{where}: pci {slot!r} is not a slot number 0-{hvp.PCI_LAST_SLOT}")
    return hvi.pci_hvinfo(driver, f"hot{kind}-{dev_uuid.split('-', maxsplit=1)[0]}-pci-{slot}", hvp.PCI_BUS, slot)


def nics(nics_in: list[Any], hv: Mapping[str, Any], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, fixed = [], []
    driver = _GANETI_NIC_DRIVER.get(hv["nic_type"], hv["nic_type"])
    for pos, nic in enumerate(nics_in):
        where = f"Ganeti runtime: nic {pos}"
        if not isinstance(nic, dict) or not isinstance(nic.get("mac"), str) or not devices.MAC_RE.match(nic["mac"].lower()):
            raise KvmError(f"{where} must be a mapping with a MAC address")
        mac = nic["mac"].lower()
        record: dict[str, Any] = {"mac": mac}
        if nic.get("uuid") is not None:
            record["uuid"] = hvi.check_uuid(nic["uuid"], f"{where} uuid")
        else:
            record["uuid"] = devices.derived_uuid("ganeti-nic", mac)
            record["uuid_from_mac"] = True
            notes.append(f"nic {pos} ({mac}) had no uuid (written before Ganeti 2.8): uuid {record['uuid']} derived from its MAC")
        record["network"] = _network(nic, record["uuid"])
        mode = (nic.get("nicparams") or {}).get("mode") if isinstance(nic.get("nicparams"), dict) else None
        if mode in ("routed", "openvswitch"):
            notes.append(f"nic {pos} ({mac}) is {mode}: a start here opens its tap; routes or the switch port are "
                         "for the operator to set up (Ganeti's kvm-ifup did that)")
        side = _side(nic, ("mac", "uuid", "pci", "hvinfo"))
        if side:
            record["ganeti"] = side
        if nic.get("hvinfo") is not None and not isinstance(nic["hvinfo"], dict):
            raise KvmError(f"{where}: hvinfo must be a mapping")
        if nic.get("hvinfo"):
            records.append({**record, "hvinfo": dict(nic["hvinfo"])})
        elif nic.get("pci") is not None:
            records.append({**record, "hvinfo": _pci_hvinfo(nic, "nic", driver, record["uuid"], where)})
        else:
            fixed.append({"kind": "nic", **record, "driver": driver, "netdev": f"netdev{pos}"})
            notes.append(f"nic {pos} ({mac}) has no PCI address (QEMU placed it): fixed, kept in order, not hotpluggable")
    return records, fixed


def disks(disks_in: list[Any], hv: Mapping[str, Any], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, fixed = [], []
    for pos, entry in enumerate(disks_in):
        where = f"Ganeti runtime: disk {pos}"
        if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], dict):
            raise KvmError(f"legacy runtime must be [kvm_cmd, [nic, ...], hvparams, [[disk, link, uri], ...]]: {where} is not [disk, link, uri]")
        disk, link, uri = entry
        if link is not None and (not isinstance(link, str) or not link.startswith("/")):
            raise KvmError(f"{where}: link {link!r} is not an absolute path")
        if uri is not None and not isinstance(uri, str):
            raise KvmError(f"{where}: uri {uri!r} is not a string")
        if link is None and uri is None:
            raise KvmError(f"{where} has neither a link nor a uri")
        if disk.get("uuid") is not None:
            dev_uuid = hvi.check_uuid(disk["uuid"], f"{where} uuid")
        else:
            dev_uuid = devices.derived_uuid("ganeti-disk", str(link or uri))
            notes.append(f"disk {pos} ({link or uri}) had no uuid: uuid {dev_uuid} derived from its path")
        record: dict[str, Any] = {"uuid": dev_uuid, "path": link, "uri": uri, "format": disk.get("format", "raw"),
                                  "mode": disk.get("mode", "rw")}
        side = _side(disk, ("uuid", "mode", "format", "pci", "hvinfo"))
        if uri is not None and link is not None and reachable(uri):
            # QEMU reaches the disk through its uri (Ganeti's userspace access): the link is kept for the export
            record["path"] = None
            side["link"] = link
        if side:
            record["ganeti"] = side
        info = disk.get("hvinfo") or {}
        if not isinstance(info, dict):
            raise KvmError(f"{where}: hvinfo must be a mapping")
        if info and hvi.driver_kind(str(info.get("driver"))) is not None:
            records.append({**record, "hvinfo": dict(info)})
        elif not info and disk.get("pci") is not None:
            # Ganeti 2.10-2.15 hot-added every disk as virtio-blk-pci whatever disk_type said.
            records.append({**record, "hvinfo": _pci_hvinfo(disk, "disk", hvp.DISK_DRIVERS["paravirtual"], dev_uuid, where)})
        else:
            gtype = str(info.get("driver") or hv["disk_type"])
            extra: dict[str, Any]
            if gtype == "ide":
                extra = {"render": "device", "driver": hvp.DISK_DRIVERS["ide"], "type": "ide"}
            elif gtype in hvp.DISK_DRIVERS:
                extra = {"render": "device", "driver": hvp.DISK_DRIVERS[gtype], "type": gtype}
            elif gtype in _GANETI_DISK_DRIVER.values():
                extra = {"render": "device", "driver": gtype, "type": "paravirtual"}
            else:  # -drive if=<type> (scsi ...): read, refused at a start by model.fixed.unstartable()
                extra = {"render": "drive", "drive": {"if": gtype}, "type": "scsi-hd"}
            fixed.append({"kind": "disk", **record, **extra})
            notes.append(f"disk {pos} ({link or uri}) has no address of its own (QEMU placed it): fixed, not hotpluggable")
    return records, fixed
