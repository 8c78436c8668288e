# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Devices QEMU placed itself (a runtime's ``fixed`` list): rendered so that QEMU places them the same way again.

What they are and which descriptors they need is ``model.fixed``; this is
how a start puts them on QEMU's command line.

Only runtimes read from Ganeti have them (``store.ganeti``): NICs and disks
without a recorded address, and ``-drive`` disks inside ``kvm_cmd``. They
are not hotpluggable, but a start (a recovery or a migration target) must
rebuild them exactly, or the guest sees other devices and a migration fails.

How QEMU places what has no address, and how a start follows it:

* **PCI.** An unaddressed device gets the lowest free slot at the moment
  QEMU creates it, and QEMU creates ``-device`` options given as key=value
  text first, in command-line order (``kvm_cmd``'s own balloon, controllers,
  ...), then the ``-drive if=virtio`` devices, then ``-device`` options given
  as JSON (every device of ``device_argv``, all addressed). A start renders
  the fixed NICs and disks as unaddressed JSON ``-device`` options *after*
  the addressed ones, in the order they ran (NICs, then disks: Ganeti
  started NICs before disks, and ``-drive if=virtio`` disks came last). With
  every addressed device created first, each unaddressed one again gets the
  slot it had: an addressed device never sits on a slot QEMU gave an
  unaddressed one (the source QEMU would have refused it), and the slots
  below it are taken exactly as before.
* **IDE.** ``-drive if=ide`` disks are numbered by their order among the
  ``-drive`` options (a CD-ROM ``-drive`` after them takes the next unit), so
  each is put back at its position ``at`` in ``kvm_cmd``, as a ``-drive``
  whose file is the descriptor the module handed over.

Disks are opened by the module and handed over as fdsets (``opaque`` is the
disk's key ``fixed<N>``), taps likewise, keyed by the NIC's ``netdev`` id:
QEMU opens nothing itself, as for every other device.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.fixed import disks, nics
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import FixedDevice, Runtime

# cache mode -> (O_DIRECT, no-flush, guest-visible write cache)
_CACHE = {
    "none": (True, False, True),
    "writeback": (False, False, True),
    "default": (False, False, True),
    "writethrough": (False, False, False),
    "directsync": (True, False, False),
    "unsafe": (False, True, True),
}


def _json(args: Mapping[str, Any]) -> str:
    return json.dumps(args, separators=(",", ":"))


def has_serial(runtime: Runtime) -> bool:
    """False when ``kvm_cmd`` says ``-serial none`` (then a start adds no serial port either)."""
    argv = runtime.get("kvm_cmd") or []
    return not any(argv[pos] == "-serial" and argv[pos + 1] == "none" for pos in range(len(argv) - 1))


def kvm_cmd_ids(runtime: Runtime) -> set[str]:
    """Ids of the devices ``kvm_cmd`` creates itself (``-device DRIVER,...,id=X``); none without a ``kvm_cmd``
    (a runtime being planned), rather than a KeyError."""
    argv = runtime.get("kvm_cmd") or []
    ids: set[str] = set()
    for pos in range(len(argv) - 1):
        if argv[pos] == "-device" and not argv[pos + 1].startswith("{"):
            ids.update(part[3:] for part in argv[pos + 1].replace(",,", "\0").split(",") if part.startswith("id="))
    return ids


def placeholder_fds(runtime: Runtime) -> tuple[dict[str, tuple[int, bool]], dict[str, int]]:
    """Illustrative descriptor numbers for the fixed disks and taps (a planned command line)."""
    disk_fds = {key: (200 + pos, False) for pos, (key, _dev) in enumerate(disks(runtime))}
    taps = {nic["netdev"]: 300 + pos for pos, nic in enumerate(nics(runtime)) if (nic.get("network") or {}).get("type") == "tap"}
    return disk_fds, taps


def _blockdev(key: str, dev: FixedDevice, filename: str, block_device: bool) -> dict[str, object]:
    read_only = dev["mode"] == "ro"
    protocol: dict[str, object] = {"driver": "host_device" if block_device else "file", "filename": filename, "read-only": read_only}
    node: dict[str, object] = {"driver": dev["format"], "node-name": key, "read-only": read_only, "file": protocol}
    if dev.get("cache"):
        direct, no_flush, _wce = _CACHE[dev["cache"]]
        node["cache"] = protocol["cache"] = {"direct": direct, "no-flush": no_flush}
    return node


def render(runtime: Runtime, fds: Any, first_fdset: int) -> tuple[list[str], list[str]]:
    """(``kvm_cmd`` with the fixed ``-drive`` disks put back, the options that follow every addressed device)."""
    head = list(runtime["kvm_cmd"])
    tail: list[str] = []
    spliced: list[tuple[int, list[str]]] = []
    for nic in nics(runtime):
        device: dict[str, object] = {"driver": nic["driver"], "mac": nic["mac"]}
        network = nic.get("network")
        if network:
            netdev: dict[str, object] = {"type": network["type"], "id": nic["netdev"]}
            if netdev["type"] == "tap":
                netdev["fd"] = str(fds.taps[nic["netdev"]])
            tail += ["-netdev", _json(netdev)]
            device["netdev"] = nic["netdev"]
        tail += ["-device", _json(device)]
    for fdset, (key, dev) in enumerate([(k, d) for k, d in disks(runtime) if not k.endswith(":ro")], start=first_fdset):
        fd, block_device = fds.disks[key]
        add_fd = ["-add-fd", f"fd={fd},set={fdset},opaque={key}"]
        if f"{key}:ro" in fds.disks:
            add_fd += ["-add-fd", f"fd={fds.disks[key + ':ro'][0]},set={fdset},opaque={key}"]
        if dev["render"] == "device":
            device = {"driver": dev["driver"], "drive": key}
            if dev.get("cache") and not _CACHE[dev["cache"]][2]:
                device["write-cache"] = "off"
            tail += [*add_fd, "-blockdev", _json(_blockdev(key, dev, f"/dev/fdset/{fdset}", block_device)), "-device", _json(device)]
            continue
        opts = {"file": f"/dev/fdset/{fdset}", "format": dev["format"], **dev["drive"]}
        if dev["mode"] == "ro":
            opts["readonly"] = "on"
        drive = [*add_fd, "-drive", hvi.options(None, opts)]
        if dev.get("at"):
            spliced.append((dev["at"], drive))
        else:
            tail += drive
    offset = 0
    for at, drive in sorted(spliced, key=lambda item: item[0]):  # stable: drives at one position keep their order
        head[at + offset:at + offset] = drive
        offset += len(drive)
    return head, tail
