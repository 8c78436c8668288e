# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk and NIC records: user specs in, runtime records and QEMU backends out.

A runtime record is the user's spec completed with everything needed to
rebuild the device: a uuid (derived deterministically when not given, so a
re-run never invents a new identity or MAC) and, once placed, its hvinfo.
"""

from __future__ import annotations

import os
import re
import uuid as uuidlib
from typing import Any, Mapping, cast

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import uri as uris
from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.results import PublicDevice
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import DiskRecord, HvInfo, Network, NicRecord

DISK_FORMATS = ("raw", "qcow2")
DISK_MODES = ("rw", "ro")
NETWORK_TYPES = ("tap", "user")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
# Namespace for uuids derived from names, so the same input gives the same uuid.
UUID_NS = uuidlib.UUID("6b1f2d4e-3c1a-5e8b-9a47-0c2d8e6f4a10")


def derived_uuid(*parts: str) -> str:
    return str(uuidlib.uuid5(UUID_NS, "/".join(parts)))


def instance_uuid(name: str, given: str | None = None) -> str:
    """An instance's uuid: the one given (or recorded), else one derived from its name."""
    return given or derived_uuid("instance", name)


def mac_from_uuid(dev_uuid: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range."""
    digits = dev_uuid.replace("-", "")[-6:]
    return "52:54:00:" + ":".join(digits[i:i + 2] for i in range(0, 6, 2))


def _only(spec: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise KvmError(f"{what}: unknown key(s) {', '.join(unknown)}; known: {', '.join(keys)}")


def disk_record(spec: Mapping[str, Any], instance_uuid: str) -> DiskRecord:
    """Validate a disk spec ``{path | uri, format, mode, uuid, type}`` into a runtime record.

    A disk is a host ``path`` (opened by the module and handed to QEMU) or a
    ``uri`` QEMU reaches itself (``iscsi://``, ``nbd://``); a ``scsi-cd``
    may have neither (an empty drive). ``type`` defaults to the instance's
    ``disk_type`` when the disk is placed.
    """
    if not isinstance(spec, dict):
        raise KvmError(f"disk {spec!r} must be a mapping with at least 'path'")
    spec = {k: v for k, v in spec.items() if v is not None}
    _only(spec, ("path", "uri", "format", "mode", "uuid", "type"), "disk")
    kind = spec.get("type")
    if kind is not None:
        kind = hvp.DISK_TYPE_ALIASES.get(kind, kind)
        if kind not in hvp.DISK_DRIVERS:
            raise KvmError(f"disk type {kind!r} is not one of: {', '.join(hvp.DISK_DRIVERS)}")
    path, uri = spec.get("path"), spec.get("uri")
    if path is not None and uri is not None:
        raise KvmError(f"disk {path}: give a path or a uri, not both")
    if path is not None:
        if not isinstance(path, str) or not os.path.isabs(path):
            raise KvmError(f"disk path {path!r} must be absolute")
        if any(ord(c) < 0x20 for c in path):
            raise KvmError(f"disk path {path!r} contains a control character")
    elif uri is not None:
        disk_uri(uri)
    elif kind != "scsi-cd" or "uuid" not in spec:
        raise KvmError("disk needs a 'path' (or a 'uri'; an empty scsi-cd needs a 'uuid')")
    name = path or uri or "(empty cd)"
    fmt = spec.get("format", "raw")
    if fmt not in DISK_FORMATS:
        raise KvmError(f"disk {name}: format {fmt!r} is not one of: {', '.join(DISK_FORMATS)}")
    mode = spec.get("mode", "ro" if kind == "scsi-cd" else "rw")
    if mode not in DISK_MODES:
        raise KvmError(f"disk {name}: mode {mode!r} is not one of: {', '.join(DISK_MODES)}")
    dev_uuid = hvi.check_uuid(spec["uuid"], f"disk {name} uuid") if "uuid" in spec else derived_uuid(instance_uuid, "disk", str(path or uri))
    record: DiskRecord = {"uuid": dev_uuid, "path": path, "format": fmt, "mode": mode}
    if uri is not None:
        record["uri"] = uri
    if kind is not None:
        record["type"] = kind
    return record


_ISCSI_RE = re.compile(r"^iscsi://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?/(iqn\.[A-Za-z0-9.:-]+)/([0-9]{1,5})\Z")
_NBD_RE = re.compile(r"^nbd://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?/([A-Za-z0-9._-]{1,64})\Z")


def disk_uri(uri: Any) -> dict[str, Any]:
    """The QMP protocol node for a network disk QEMU reaches itself.

    ``iscsi://HOST[:PORT]/IQN/LUN`` and ``nbd://HOST[:PORT]/EXPORT``; no
    credentials (they would show in ``query-block``).
    """
    text = str(uri)
    iscsi = _ISCSI_RE.match(text)
    if iscsi and uris.port_ok(iscsi.group(2) or "3260"):
        # libiscsi parses the portal itself: an IPv6 host keeps its brackets
        return {"driver": "iscsi", "transport": "tcp", "portal": f"{iscsi.group(1)}:{iscsi.group(2) or 3260}",
                "target": iscsi.group(3), "lun": int(iscsi.group(4))}
    nbd = _NBD_RE.match(text)
    if nbd and uris.port_ok(nbd.group(2) or "10809"):
        # QEMU's InetSocketAddress wants the bare host: an IPv6 address without its brackets
        host = nbd.group(1).removeprefix("[").removesuffix("]")
        return {"driver": "nbd", "server": {"type": "inet", "host": host, "port": nbd.group(2) or "10809"},
                "export": nbd.group(3)}
    raise KvmError(f"disk uri {text!r} is not iscsi://HOST[:PORT]/IQN/LUN or nbd://HOST[:PORT]/EXPORT "
                   "(port 1-65535, no credentials)")


def nic_record(spec: Mapping[str, Any], instance_uuid: str, index: int | None = None) -> NicRecord:
    """Validate a NIC spec ``{mac, uuid, network}`` into a runtime record.

    Without a uuid the NIC's identity derives from its MAC, or else from its
    index in the instance's list; without a MAC it derives from the uuid.
    """
    if not isinstance(spec, dict):
        raise KvmError(f"nic {spec!r} must be a mapping")
    spec = {k: v for k, v in spec.items() if v is not None}
    _only(spec, ("mac", "uuid", "network"), "nic")
    mac = spec.get("mac")
    if mac is not None:
        if not isinstance(mac, str) or not MAC_RE.match(mac.lower()):
            raise KvmError(f"nic mac {mac!r} is not a MAC address like 52:54:00:12:34:56")
        mac = mac.lower()
        if int(mac[:2], 16) & 1:
            raise KvmError(f"nic mac {mac} is a multicast address; the first octet must be even")
    if "uuid" in spec:
        dev_uuid = hvi.check_uuid(spec["uuid"], "nic uuid")
    elif mac is not None:
        dev_uuid = derived_uuid(instance_uuid, "nic", mac)
    elif index is not None:
        dev_uuid = derived_uuid(instance_uuid, "nic", str(index))
    else:
        raise KvmError("nic needs a 'mac' or a 'uuid' to be identified")
    return {"uuid": dev_uuid, "mac": mac or mac_from_uuid(dev_uuid), "network": network_record(spec.get("network"))}


def network_record(net: Any) -> Network | None:
    if net is None:
        return None
    if not isinstance(net, dict):
        raise KvmError(f"nic network {net!r} must be a mapping with a 'type'")
    net = {k: v for k, v in net.items() if v is not None}
    kind = net.get("type")
    if kind == "user":
        _only(net, ("type",), "nic network type user")
        return {"type": "user"}
    if kind == "tap":
        _only(net, ("type", "ifname", "bridge"), "nic network type tap")
        for key in ("ifname", "bridge"):
            if key in net and (not isinstance(net[key], str) or not IFNAME_RE.match(net[key])):
                raise KvmError(f"nic network {key} {net[key]!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
        if "ifname" not in net:
            raise KvmError("nic network type tap needs an 'ifname'")
        return cast(Network, dict(net))  # checked key by key above
    raise KvmError(f"nic network type {kind!r} is not one of: {', '.join(NETWORK_TYPES)}")


def blockdev_args(disk: Mapping[str, Any], filename: str | None, host_device: bool = False) -> dict[str, object]:
    """QMP ``blockdev-add`` arguments (also ``-blockdev`` JSON): one node named like the device.

    A host file is a format node over the ``/dev/fdset/N`` the module handed
    over (``filename``). A network disk is its protocol node itself, so a
    pass-through device (``scsi-block``, ``scsi-generic``) talks to it directly.
    """
    read_only = disk["mode"] == "ro"
    node = disk["hvinfo"]["id"]
    if disk.get("uri"):
        return {**disk_uri(disk["uri"]), "node-name": node, "read-only": read_only}
    return {
        "driver": disk["format"],
        "node-name": node,
        "read-only": read_only,
        "file": {"driver": "host_device" if host_device else "file", "filename": filename, "read-only": read_only},
    }


def netdev_args(nic: Mapping[str, Any], fd: str | None = None) -> dict[str, object] | None:
    """QMP ``netdev_add`` arguments (also ``-netdev`` JSON), or None for a NIC without a backend link.

    A tap is always handed over as a descriptor ``fd`` (a number at start, a
    ``getfd`` name at hotplug): QEMU never opens or configures a tap itself.
    """
    net = nic.get("network")
    if not net:
        return None
    dev_id = nic["hvinfo"]["id"]
    if net["type"] == "user":
        return {"type": "user", "id": dev_id}
    if fd is None:
        raise KvmError(f"nic {dev_id}: a tap needs its descriptor")
    return {"type": "tap", "id": dev_id, "fd": fd}


def has_medium(disk: Mapping[str, Any]) -> bool:
    """Whether the disk has a backend (an empty scsi-cd has none)."""
    return bool(disk.get("path") or disk.get("uri"))


def disk_device_extra(disk: Mapping[str, Any]) -> dict[str, object]:
    return {"drive": disk["hvinfo"]["id"] if has_medium(disk) else None}


def nic_device_extra(nic: Mapping[str, Any]) -> dict[str, object]:
    return {"netdev": nic["hvinfo"]["id"] if nic.get("network") else None, "mac": nic["mac"]}


def public(dev: Mapping[str, Any]) -> PublicDevice:
    """What modules return for a device: its identity, id and hvinfo."""
    hvinfo: HvInfo = dev["hvinfo"]
    return {"uuid": dev["uuid"], "id": hvinfo["id"], "hvinfo": hvinfo.copy()}
