# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ganeti's ``kvm_cmd`` made current, keeping the device tree.

``kvm_cmd`` is what the instance's QEMU was started with, so a migration
target runs it again. Kept apart from the reader because it is a rewrite of
QEMU options, one rule per option, that no other part of the codec needs:

* non-strings become strings (Ganeti writes ``-m`` and, before 2.7, ``-smp``
  as integers); anything else that is not a string is refused;
* host plumbing goes (``-pidfile``, ``-daemonize``, ``-monitor``,
  ``-serial unix:...``, ``-qmp``, ``-chroot``, ``-runas``, ``-run-with``,
  ``-D``, ``-k``, ``-incoming``): this collection adds its own per host. It
  is kept in the record's ``ganeti.plumbing`` for the export. ``-S`` goes
  too (a migration target takes the run state of its source);
* options current QEMU rejects are rewritten in place to what builds the
  same devices: ``-balloon virtio[,opts]`` -> ``-device virtio-balloon[,opts]``,
  ``-localtime`` -> ``-rtc base=localtime``, ``-no-kvm``/``-disable-kvm`` ->
  ``-machine accel=tcg``, ``-vnc ...,tls,x509verify=D`` -> a ``tls-creds``
  object before ``-vnc ...,tls-creds=vnctls0`` (as Ganeti 2.16.1 does),
  ``-soundhw M`` -> ``-audio driver=none,model=M`` (the same early device
  phase), ``boot=on`` dropped from ``-drive``;
* ``-usbdevice X`` becomes ``-device usb-X`` (with ``-usb``). QEMU creates
  ``-usbdevice`` devices before every ``-device``, so the rewritten option
  moves in front of the first ``-device`` (USB ports are handed out in
  creation order);
* a guest agent ``-chardev socket,path=<Ganeti's ctrl dir>`` becomes a
  ``null`` chardev with the same id (the device stays; nothing listens);
* ``-drive`` disks (Ganeti before 2.10) come out as fixed disks, opened by
  the module and handed over as descriptors like every other disk;
* ``-net none`` is appended (Ganeti adds it per start when there is no NIC;
  with NICs their netdevs have the same effect), so QEMU never adds its
  default NIC on a target.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.opts import find, groups_of, join_opts, kv, opt_name, split_opts
from ansible_collections.kvmhv.qemu.plugins.module_utils.types import FixedDevice

# Host plumbing: where the writing host kept its sockets, logs and identity.
_PLUMBING = frozenset({"pidfile", "daemonize", "monitor", "qmp", "chroot", "runas", "run-with", "D", "k", "incoming", "S"})
_USB_DEVICES = {"mouse": "usb-mouse", "tablet": "usb-tablet", "keyboard": "usb-kbd", "wacom-tablet": "usb-wacom-tablet"}
# -drive interfaces whose disks the module hands over; others are left to QEMU.
_DRIVE_DISK_INTERFACES = ("virtio", "ide", "scsi")
_PROTOCOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def strings(kvm_cmd: list[Any]) -> list[str]:
    """``kvm_cmd`` as strings (Ganeti wrote some numbers as integers); anything else is refused."""
    out = []
    for pos, arg in enumerate(kvm_cmd):
        if isinstance(arg, bool) or not isinstance(arg, (str, int)):
            raise KvmError(f"Ganeti runtime: kvm_cmd element {pos} is {arg!r}, neither a string nor an integer")
        out.append(str(arg))
    if not out or not out[0]:
        raise KvmError("Ganeti runtime: kvm_cmd is empty (it must start with the QEMU binary)")
    return out


def _vnc(group: list[str], notes: list[str]) -> list[list[str]]:
    """``-vnc ...,tls[,x509verify=D|x509=D]`` -> a tls-creds object and ``tls-creds=vnctls0``."""
    parts = split_opts(group[1])
    keys = dict(kv(p) for p in parts[1:])
    if "tls" not in keys and "x509" not in keys and "x509verify" not in keys:
        return [group]
    directory = keys.get("x509verify") or keys.get("x509")
    if directory:
        verify = "yes" if "x509verify" in keys else "no"
        creds = join_opts(["tls-creds-x509", "id=vnctls0", "endpoint=server", f"dir={directory}", f"verify-peer={verify}"])
    else:
        creds = "tls-creds-anon,id=vnctls0,endpoint=server"
    kept = [parts[0]] + [p for p in parts[1:] if kv(p)[0] not in ("tls", "x509", "x509verify")] + ["tls-creds=vnctls0"]
    notes.append("kvm_cmd: VNC TLS options rewritten to a tls-creds object (tls-creds=vnctls0)")
    return [["-object", creds], [group[0], join_opts(kept)]]


def _drive(group: list[str], notes: list[str]) -> FixedDevice | list[str]:
    """A ``-drive``: a fixed disk the module will hand over, or the option to keep (``boot=`` dropped)."""
    opts: dict[str, str] = {}
    for pos, part in enumerate(split_opts(group[1])):
        key, value = kv(part)
        if value is None:  # the first bare word is the file (QEMU's implied key), later ones mean on
            key, value = ("file", key) if pos == 0 else (key, "on")
        if key in opts:
            raise KvmError(f"Ganeti runtime: kvm_cmd -drive {group[1]!r} names {key} twice")
        opts[key] = value
    opts.pop("boot", None)  # boot=on: gone from QEMU (the boot order is -boot's)
    filename = opts.get("file", "")
    interface = opts.get("if", "ide")
    local = filename.startswith("/") and not _PROTOCOL_RE.match(filename)
    if not local or opts.get("media", "disk") != "disk" or interface not in _DRIVE_DISK_INTERFACES:
        return ["-drive", join_opts([f"{k}={v}" for k, v in opts.items()])]
    fmt = opts.pop("format", "raw")
    if fmt not in devices.DISK_FORMATS:
        raise KvmError(f"Ganeti runtime: kvm_cmd -drive {filename}: format {fmt!r} is not one of {', '.join(devices.DISK_FORMATS)}")
    del opts["file"]
    mode = "ro" if opts.pop("readonly", "off") in ("on", "yes", "true") else "rw"
    opts.pop("media", None)
    notes.append(f"disk {filename} is a -drive in kvm_cmd (Ganeti before 2.10): fixed, placed by QEMU, not hotpluggable")
    disk: FixedDevice = {"kind": "disk", "uuid": devices.derived_uuid("ganeti-disk", filename), "path": filename,
                         "uri": None, "format": fmt, "mode": mode}
    if interface == "virtio":
        disk.update({"render": "device", "driver": hvp.DISK_DRIVERS["paravirtual"], "type": "paravirtual"})
        if "cache" in opts:
            disk["cache"] = opts["cache"]
    else:
        disk.update({"render": "drive", "drive": opts, "type": "ide" if interface == "ide" else "scsi-hd"})
    return disk


def rewrite(argv: list[str], notes: list[str], plumbing: list[list[str]]) -> tuple[list[str], list[FixedDevice]]:
    """Current QEMU options for a Ganeti kvm_cmd, and the fixed disks found in it (see the module doc)."""
    out: list[list[str] | FixedDevice] = []
    usb_at: int | None = None  # where moved -usbdevice rewrites go (before the first -device)
    have_usb = bool(find(groups_of(argv), "usb")) or any(
        "usb=on" in split_opts(g[1]) for g in find(groups_of(argv), "machine", "M") if len(g) > 1)
    drives: list[FixedDevice] = []
    rewritten: list[str] = []
    for group in groups_of(argv):
        name = opt_name(group[0])
        arg = group[1] if len(group) > 1 else None
        if name is None:
            if group[0] == "":
                notes.append("kvm_cmd: an empty argument (a double space in Ganeti's kvm_extra) was dropped")
                continue
            out.append(group)
        elif name in _PLUMBING or (name == "serial" and arg != "none"):
            plumbing.append(group)
        elif name == "balloon":
            model = split_opts(arg or "")
            if model[0] == "none":
                continue
            if model[0] != "virtio":
                raise KvmError(f"Ganeti runtime: kvm_cmd -balloon {arg!r}: only the virtio balloon exists")
            out.append(["-device", join_opts(["virtio-balloon", *model[1:]])])
            rewritten.append("-balloon")
        elif name == "localtime":
            out.append(["-rtc", "base=localtime"])
            rewritten.append("-localtime")
        elif name in ("no-kvm", "disable-kvm"):
            out.append(["-machine", "accel=tcg"])
            rewritten.append(group[0])
        elif name == "vnc" and arg is not None:
            out.extend(_vnc(group, notes))
        elif name == "soundhw" and arg is not None:
            out.extend(["-audio", f"driver=none,model={model}"] for model in split_opts(arg) if model)
            rewritten.append("-soundhw")
        elif name == "usbdevice" and arg is not None:
            if arg not in _USB_DEVICES:
                raise KvmError(f"Ganeti runtime: kvm_cmd -usbdevice {arg!r} is not supported (only {', '.join(_USB_DEVICES)})")
            if not have_usb:
                out.append(["-usb"])
                have_usb = True
            device = ["-device", _USB_DEVICES[arg]]
            first_device = next((i for i, g in enumerate(out) if isinstance(g, list) and opt_name(g[0]) == "device"), None)
            if first_device is None:
                out.append(device)
            else:
                usb_at = first_device if usb_at is None else usb_at
                out.insert(usb_at, device)
                usb_at += 1
            rewritten.append("-usbdevice")
        elif name == "drive" and arg is not None:
            found = _drive(group, notes)
            if isinstance(found, dict):
                drives.append(found)
            out.append(found)
        elif name == "chardev" and arg is not None and split_opts(arg)[0] == "socket" and any(
                kv(p)[0] == "path" for p in split_opts(arg)):
            ids = [v for k, v in map(kv, split_opts(arg)) if k == "id"]
            if not ids or not ids[0]:
                raise KvmError(f"Ganeti runtime: kvm_cmd -chardev {arg!r} has no id")
            out.append(["-chardev", join_opts(["null", f"id={ids[0]}"])])
            notes.append(f"kvm_cmd: chardev {ids[0]} listened on a path in Ganeti's control directory: "
                         "a start here gives it a null backend (the device stays, nothing is connected)")
        else:
            out.append(group)
    if rewritten:
        notes.append(f"kvm_cmd: rewritten for current QEMU: {', '.join(dict.fromkeys(rewritten))}")
    if plumbing:
        notes.append("kvm_cmd: host plumbing replaced by this collection's own: "
                     + ", ".join(dict.fromkeys(g[0] for g in plumbing)))
    flat = [argv[0]]
    for item in out:
        if isinstance(item, dict):
            if item["render"] == "drive":
                item["at"] = len(flat)
        else:
            flat.extend(item)
    names = {opt_name(a) for a in flat}
    if not names & {"nodefaults", "net", "nic"}:
        flat += ["-net", "none"]
    return flat, drives


def machine_of(argv: list[str]) -> tuple[str | None, str | None]:
    """(machine type, accelerator) a kvm_cmd asks QEMU for; None where it says nothing."""
    machine = accel = None
    for group in groups_of(argv):
        name = opt_name(group[0])
        if name in ("machine", "M") and len(group) > 1:
            for pos, part in enumerate(split_opts(group[1])):
                key, value = kv(part)
                if value is None and pos == 0 and key:
                    machine = key
                elif key == "type":
                    machine = value
                elif key == "accel" and value:
                    accel = value.split(":")[0]
        elif name == "accel" and len(group) > 1:
            accel = split_opts(group[1])[0]
        elif name == "enable-kvm":
            accel = "kvm"
        elif name in ("no-kvm", "disable-kvm"):
            accel = "tcg"
    if accel is None and os.path.basename(argv[0]) == "kvm":
        accel = "kvm"  # Debian's and Ganeti's kvm is QEMU with KVM enabled
    return machine, accel
