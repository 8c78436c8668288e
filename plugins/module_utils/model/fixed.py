# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Devices QEMU placed itself (a runtime's ``fixed`` list): what they are, which descriptors they need, and
what this collection cannot start.

These are facts about the device model, not about any file format: the
Ganeti reader (``store.ganeti``) is what fills ``fixed``, a start
(``qemu.fixed``) renders it, hotplug finds a device here to say it is not
hotpluggable. Pure: no I/O.

A fixed device is a NIC or disk without a recorded address (``kind`` nic
or disk), kept in order, not hotpluggable, migratable. A fixed disk is
either rendered as a ``-device`` (``render: device``) or as a ``-drive``
(``render: drive``, put back at its position ``at`` in ``kvm_cmd``); a
fixed NIC names the ``netdev`` its tap is keyed by.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DeviceKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import FixedDevice, Runtime


def disks(runtime: Runtime) -> list[tuple[str, FixedDevice]]:
    """(key, disk) of every descriptor the fixed disks need, in order.

    A disk's key is ``fixed<N>`` (N: its position in ``fixed``). A
    ``-drive`` disk opens its file read-only before it reopens it
    read-write, so its fdset holds a read-only descriptor too (key
    ``fixed<N>:ro``), whatever its cache mode.
    """
    found: list[tuple[str, FixedDevice]] = []
    for pos, dev in enumerate(runtime.get("fixed", [])):
        if dev.get("kind") == "disk":
            found.append((f"fixed{pos}", dev))
            if dev.get("render") == "drive" and dev.get("mode") != "ro":
                read_only = dev.copy()
                read_only["mode"] = "ro"
                found.append((f"fixed{pos}:ro", read_only))
    return found


def nics(runtime: Runtime) -> list[FixedDevice]:
    """The fixed NICs, in order."""
    return [dev for dev in runtime.get("fixed", []) if dev.get("kind") == "nic"]


def find(runtime: Runtime, kind: DeviceKind, key: str, value: object) -> FixedDevice | None:
    """The fixed device of ``kind`` whose ``key`` is ``value`` (a fixed device's kind is the noun: disk, nic)."""
    return next((d for d in runtime.get("fixed", []) if d.get("kind") == kind.noun and d.get(key) == value), None)


def reachable(uri: str) -> bool:
    """Whether this collection can hand QEMU the uri (``devices.disk_uri``: iscsi://, nbd://)."""
    try:
        devices.disk_uri(uri)
    except KvmError:
        return False
    return True


def unstartable(runtime: Runtime) -> str | None:
    """Why this collection cannot start QEMU for ``runtime`` (a recovery or a migration target), or None.

    What a runtime read from Ganeti may hold and a start cannot build: a disk
    reached through a uri QEMU cannot be handed (or a fixed disk or one with
    a link as well), a ``-drive`` interface current QEMU no longer has,
    multiqueue NICs.
    """
    fixed_disks = [f for f in runtime.get("fixed", []) if f.get("kind") == "disk"]
    recorded: list[Mapping[str, Any]] = [*runtime.get("disks", []), *fixed_disks]
    for dev in recorded:
        if dev.get("uri") and (dev.get("path") or dev.get("kind") == "disk" or not reachable(dev["uri"])):
            return (f"disk {dev.get('path') or dev['uri']} is reached through uri {dev['uri']!r}, which this collection "
                    "cannot hand to QEMU (it knows iscsi:// and nbd:// uris on disks of their own)")
    for fixed in runtime.get("fixed", []):
        interface = (fixed.get("drive") or {}).get("if")
        if interface not in (None, "ide", "virtio"):
            return f"disk {fixed.get('path')} is a -drive if={interface} disk, which current QEMU no longer has"
    queues = runtime.get("legacy_hvparams", {}).get("virtio_net_queues")
    if isinstance(queues, int) and not isinstance(queues, bool) and queues > 1:
        return f"hvparam virtio_net_queues={queues}: multiqueue NICs (mq=on, vectors) are not supported by this collection"
    return None
