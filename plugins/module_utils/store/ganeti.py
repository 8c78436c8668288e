# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ganeti's KVM runtime files in (every layout 2.0-3.1) and out (a downgrade export).

Pure functions: JSON data in, JSON data out; nothing here touches a file or QEMU.

**Layouts read** (``read``), told apart by their content, not by a version:

* 2.0-2.9: three elements ``[kvm_cmd, nics, hvparams]``; the disks are
  ``-drive`` options inside ``kvm_cmd`` and QEMU placed every disk and NIC.
* 2.10-2.15: a fourth element, the disk list ``[[disk, link, uri], ...]``;
  disks and NICs carry an integer ``pci`` slot.
* 2.16-3.1: ``hvinfo`` dicts instead of ``pci`` (ids ``disk-xxxxxxxx-xxxx-xxxx``,
  slots from ``kvm_pci_reservations``, 12 by default, so below 0x10).

Files of one era re-saved by a later one mix these traits (a 2.9 VM after a
hotplug under 2.15 has ``-drive`` disks in ``kvm_cmd`` *and* a disk list);
each device is read by what it carries.

**kvm_cmd** is what the instance's QEMU was started with, so a migration
target runs it again. It is made current, keeping the device tree:

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
* ``-net none`` is appended (Ganeti adds it per start when there is no NIC;
  with NICs their netdevs have the same effect), so QEMU never adds its
  default NIC on a target.

**Devices.** A disk or NIC with ``hvinfo`` or ``pci`` is a normal record
(hotpluggable, its id kept exactly as the running QEMU knows it). One with
neither was placed by QEMU: it goes to the runtime's ``fixed`` list (see
``qemu.fixed`` for how a start renders it so QEMU places it the same way),
kept in order, not hotpluggable, migratable. ``-drive`` disks in
``kvm_cmd`` are fixed disks too (opened by the module and handed over as
descriptors like every other disk).

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

The SCSI controller Ganeti puts in ``kvm_cmd`` (``-device <type>,id=scsi``)
is recorded in ``controllers`` for its bus, and stays in ``kvm_cmd`` where
it is, so QEMU places it as before.

**hvparams**: ``disk_type``, ``nic_type``, ``scsi_controller_type`` and
``kvm_pci_reservations`` are honoured (12, Ganeti's default, when the file
predates the parameter; at least 4); the machine type and accelerator come
from ``kvm_cmd`` (what the QEMU runs), not from defaults. Ganeti's other
hvparams are kept aside in ``legacy_hvparams``. Values that build devices
this collection cannot (``disk_type`` sd/mtd/pflash, ``nic_type``
ne2k_isa) are refused when read; ones it cannot start yet (multiqueue NICs,
``-drive if=scsi`` disks, disks reached through a uri) are read and refused
by ``model.fixed.unstartable`` when a start is asked for.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import fixed as fixed_devices
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp

LAYOUT_DRIVES = "2.0-2.9"  # three elements, disks inside kvm_cmd
LAYOUT_PCI = "2.10-2.15"  # integer pci slots
LAYOUT_HVINFO = "2.16-3.1"  # hvinfo dicts
GANETI_DEFAULT_RESERVATIONS = 12
DEFAULT_RUN_DIR = "/var/run/ganeti"

# QEMU options that take no argument (everything else takes exactly one).
_FLAGS = frozenset({
    "daemonize", "S", "usb", "nographic", "no-acpi", "no-reboot", "no-shutdown", "enable-kvm", "disable-kvm",
    "no-kvm", "localtime", "mem-prealloc", "nodefaults", "no-hpet", "snapshot", "full-screen", "no-user-config",
    "no-kvm-irqchip", "no-kvm-pit", "no-kvm-pit-reinjection", "enable-nesting", "no-fd-bootchk", "no-frame",
    "alt-grab", "ctrl-grab", "no-quit", "win2k-hack", "rtc-td-hack", "portrait", "nodefconfig", "enable-fips",
    "only-migratable", "s", "semihosting", "no-graphic", "sdl", "curses", "preconfig", "xen-attach", "h", "help",
    "version", "old-param", "enable-sync-profile",
})
# Host plumbing: where the writing host kept its sockets, logs and identity.
_PLUMBING = frozenset({"pidfile", "daemonize", "monitor", "qmp", "chroot", "runas", "run-with", "D", "k", "incoming", "S"})
_USB_DEVICES = {"mouse": "usb-mouse", "tablet": "usb-tablet", "keyboard": "usb-kbd", "wacom-tablet": "usb-wacom-tablet"}
_UNSUPPORTED_DISK_TYPES = ("sd", "mtd", "pflash")
# -drive interfaces whose disks the module hands over; others are left to QEMU.
_DRIVE_DISK_INTERFACES = ("virtio", "ide", "scsi")
_PROTOCOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_NUM_RE = re.compile(r"^([0-9]+)([MmGg]?)\Z")
_IFNAME_PREFIX = "gnt"
# Ganeti's nic_type / disk_type -> the -device driver it used (a literal type otherwise).
_GANETI_NIC_DRIVER = {"paravirtual": "virtio-net-pci"}
_GANETI_DISK_DRIVER = {"paravirtual": "virtio-blk-pci"}


# -- QemuOpts text ------------------------------------------------------------

def split_opts(text: str) -> list[str]:
    """``a,b=c,,d`` -> ``["a", "b=c,d"]`` (QEMU's ``key=value`` lists; ``,,`` is a comma)."""
    parts: list[str] = []
    cur: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "," and text[pos + 1:pos + 2] == ",":
            cur.append(",")
            pos += 2
            continue
        if char == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(char)
        pos += 1
    parts.append("".join(cur))
    return parts


def join_opts(parts: list[str]) -> str:
    return ",".join(part.replace(",", ",,") for part in parts)


def _kv(part: str) -> tuple[str, str | None]:
    key, sep, value = part.partition("=")
    return (key, value) if sep else (key, None)


def _opt_name(token: str) -> str | None:
    """The option a token names (``-m``, ``--m`` -> ``m``), None for a non-option."""
    if len(token) > 1 and token.startswith("-"):
        return token.lstrip("-") or None
    return None


def groups_of(argv: list[str]) -> list[list[str]]:
    """``argv[1:]`` as option groups ``[option, argument]``, ``[flag]`` or ``[positional]``.

    Fail closed: an option this parser does not know followed by something
    that looks like an option is taken as a flag, so an unknown flag can
    never swallow the option after it (``-sdl -incoming ...`` keeps
    ``-incoming`` an option, dropped as plumbing).
    """
    groups: list[list[str]] = []
    pos = 1
    while pos < len(argv):
        token = argv[pos]
        name = _opt_name(token)
        follows = argv[pos + 1] if pos + 1 < len(argv) else ""
        looks_like_option = len(follows) > 1 and follows[0] == "-" and follows[1].isalpha()
        if name is not None and name not in _FLAGS and pos + 1 < len(argv) and not looks_like_option:
            groups.append([token, argv[pos + 1]])
            pos += 2
        else:
            groups.append([token])
            pos += 1
    return groups


def _find(groups: list[list[str]], *names: str) -> list[list[str]]:
    return [g for g in groups if _opt_name(g[0]) in names]


# -- kvm_cmd --------------------------------------------------------------------

def _strings(kvm_cmd: list[Any]) -> list[str]:
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
    keys = dict(_kv(p) for p in parts[1:])
    if "tls" not in keys and "x509" not in keys and "x509verify" not in keys:
        return [group]
    directory = keys.get("x509verify") or keys.get("x509")
    if directory:
        verify = "yes" if "x509verify" in keys else "no"
        creds = join_opts(["tls-creds-x509", "id=vnctls0", "endpoint=server", f"dir={directory}", f"verify-peer={verify}"])
    else:
        creds = "tls-creds-anon,id=vnctls0,endpoint=server"
    kept = [parts[0]] + [p for p in parts[1:] if _kv(p)[0] not in ("tls", "x509", "x509verify")] + ["tls-creds=vnctls0"]
    notes.append("kvm_cmd: VNC TLS options rewritten to a tls-creds object (tls-creds=vnctls0)")
    return [["-object", creds], [group[0], join_opts(kept)]]


def _drive(group: list[str], notes: list[str]) -> dict[str, Any] | list[str]:
    """A ``-drive``: a fixed disk the module will hand over, or the option to keep (``boot=`` dropped)."""
    opts: dict[str, str] = {}
    for pos, part in enumerate(split_opts(group[1])):
        key, value = _kv(part)
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
    disk: dict[str, Any] = {"kind": "disk", "uuid": devices.derived_uuid("ganeti-disk", filename), "path": filename,
                            "uri": None, "format": fmt, "mode": mode}
    if interface == "virtio":
        disk.update({"render": "device", "driver": hvp.DISK_DRIVERS["paravirtual"], "type": "paravirtual"})
        if "cache" in opts:
            disk["cache"] = opts["cache"]
    else:
        disk.update({"render": "drive", "drive": opts, "type": "ide" if interface == "ide" else "scsi-hd"})
    return disk


def _rewrite_kvm_cmd(argv: list[str], notes: list[str], plumbing: list[list[str]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Current QEMU options for a Ganeti kvm_cmd, and the fixed disks found in it (see the module doc)."""
    out: list[list[str] | dict[str, Any]] = []
    usb_at: int | None = None  # where moved -usbdevice rewrites go (before the first -device)
    have_usb = bool(_find(groups_of(argv), "usb")) or any(
        "usb=on" in split_opts(g[1]) for g in _find(groups_of(argv), "machine", "M") if len(g) > 1)
    drives: list[dict[str, Any]] = []
    rewritten: list[str] = []
    for group in groups_of(argv):
        name = _opt_name(group[0])
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
            first_device = next((i for i, g in enumerate(out) if isinstance(g, list) and _opt_name(g[0]) == "device"), None)
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
                _kv(p)[0] == "path" for p in split_opts(arg)):
            ids = [v for k, v in map(_kv, split_opts(arg)) if k == "id"]
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
    names = {_opt_name(a) for a in flat}
    if not names & {"nodefaults", "net", "nic"}:
        flat += ["-net", "none"]
    return flat, drives


def _argv_value(argv: list[str], *options: str) -> str | None:
    for group in groups_of(argv):
        if len(group) > 1 and _opt_name(group[0]) in options:
            return group[1]
    return None


def _first_field(text: str | None, key: str) -> str | None:
    if text is None:
        return None
    for pos, part in enumerate(split_opts(text)):
        name, value = _kv(part)
        if value is None and pos == 0:
            return name
        if name == key:
            return value
    return None


def _mib(text: str | None) -> int | None:
    match = _NUM_RE.match(_first_field(text, "size") or "")
    if not match:
        return None
    return int(match.group(1)) * (1024 if match.group(2) in ("G", "g") else 1)


def machine_of(argv: list[str]) -> tuple[str | None, str | None]:
    """(machine type, accelerator) a kvm_cmd asks QEMU for; None where it says nothing."""
    machine = accel = None
    for group in groups_of(argv):
        name = _opt_name(group[0])
        if name in ("machine", "M") and len(group) > 1:
            for pos, part in enumerate(split_opts(group[1])):
                key, value = _kv(part)
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


# -- hvparams ----------------------------------------------------------------------

def _hvparams(ganeti_hv: dict[str, Any], argv: list[str], notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(this collection's hvparams, Ganeti's hvparams kept aside) for a Ganeti runtime."""
    disk_type = ganeti_hv.get("disk_type") or "paravirtual"
    if disk_type in _UNSUPPORTED_DISK_TYPES:
        raise KvmError(f"Ganeti runtime: disk_type {disk_type!r} places disks on a bus QEMU's pc machine does not have; "
                       "this collection cannot run such an instance")
    nic_type = ganeti_hv.get("nic_type") or "paravirtual"
    if nic_type == "ne2k_isa":
        raise KvmError("Ganeti runtime: nic_type 'ne2k_isa' is an ISA NIC that QEMU places itself and cannot hotplug; "
                       "this collection cannot run such an instance")
    ours: dict[str, Any] = {"disk_type": disk_type, "nic_type": nic_type}
    if ganeti_hv.get("scsi_controller_type"):
        ours["scsi_controller_type"] = ganeti_hv["scsi_controller_type"]
    res = ganeti_hv.get("kvm_pci_reservations")
    if isinstance(res, bool) or not isinstance(res, int):
        res = GANETI_DEFAULT_RESERVATIONS
        ours["reservations_default"] = True  # taken out again below; tells read() the file predates the parameter
        notes.append(f"hvparam kvm_pci_reservations is missing: new devices go from slot {res:#04x} up (Ganeti's default)")
    elif res < hvp.MIN_PCI_RESERVATIONS:
        notes.append(f"hvparam kvm_pci_reservations={res} raised to {hvp.MIN_PCI_RESERVATIONS} (QEMU's own devices need the low slots)")
        res = hvp.MIN_PCI_RESERVATIONS
    ours["kvm_pci_reservations"] = min(res, hvp.PCI_LAST_SLOT + 1)
    defaulted = ours.pop("reservations_default", False)
    machine, accel = machine_of(argv)
    if accel:
        ours["accel"] = accel
    if machine:
        ours["machine_type"] = machine
    try:
        normalized = hvp.normalize(ours)
    except KvmError as err:
        if not machine or "machine_type" not in err.msg or not re.match(r"^pc(-[0-9.]+)?\Z", machine):
            raise KvmError(f"Ganeti runtime: {err.msg}") from None
        # An older i440fx name (pc-0.12, pc-1.0): kvm_cmd keeps it; new starts use "pc".
        ours["machine_type"] = "pc"
        notes.append(f"machine {machine} is recorded as machine_type pc (kvm_cmd keeps {machine})")
        normalized = hvp.normalize(ours)
    legacy = {k: v for k, v in ganeti_hv.items() if not (k in normalized and normalized[k] == v)}
    if defaulted:
        legacy["reservations_default"] = True
    return normalized, legacy


# -- devices --------------------------------------------------------------------------

def tap_name(dev_uuid: str) -> str:
    """The tap a start names for an imported NIC: ``gnt`` + 12 hex digits of its uuid (15 characters)."""
    return _IFNAME_PREFIX + dev_uuid.replace("-", "")[:12]


def _network(nic: dict[str, Any], dev_uuid: str) -> dict[str, Any] | None:
    net = nic.get("network")
    if isinstance(net, dict):  # this collection's own record (its early legacy export)
        return net
    params: dict[str, Any] = nic["nicparams"] if isinstance(nic.get("nicparams"), dict) else {}
    mode = params.get("mode") or ("bridged" if nic.get("bridge") else None)
    if mode is None:
        return None
    record: dict[str, Any] = {"type": "tap", "ifname": tap_name(dev_uuid)}
    bridge = params.get("link") or nic.get("bridge") if mode == "bridged" else None
    if bridge:
        record["bridge"] = bridge
    return devices.network_record(record)


def _side(dev: dict[str, Any], drop: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in dev.items() if k not in drop}


def _pci_hvinfo(dev: dict[str, Any], kind: str, driver: str, dev_uuid: str, where: str) -> dict[str, Any]:
    slot = dev["pci"]
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= hvp.PCI_LAST_SLOT:
        raise KvmError(f"{where}: pci {slot!r} is not a slot number 0-{hvp.PCI_LAST_SLOT}")
    return dict(hvi.pci_hvinfo(driver, f"hot{kind}-{dev_uuid.split('-', maxsplit=1)[0]}-pci-{slot}", hvp.PCI_BUS, slot))


def _nics(nics_in: list[Any], hv: dict[str, Any], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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


def _disks(disks_in: list[Any], hv: dict[str, Any], notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
        if uri is not None and link is not None and fixed_devices.reachable(uri):
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
            else:  # -drive if=<type> (scsi ...): read, refused at a start by fixed.unstartable()
                extra = {"render": "drive", "drive": {"if": gtype}, "type": "scsi-hd"}
            fixed.append({"kind": "disk", **record, **extra})
            notes.append(f"disk {pos} ({link or uri}) has no address of its own (QEMU placed it): fixed, not hotpluggable")
    return records, fixed


# -- reading ------------------------------------------------------------------------

def layout_of(data: list[Any]) -> str:
    """Which Ganeti era wrote ``data`` (the newest trait found wins)."""
    if len(data) == 3:
        return LAYOUT_DRIVES
    devs = [n for n in data[1] if isinstance(n, dict)] + [e[0] for e in data[3] if isinstance(e, list) and e and isinstance(e[0], dict)]
    if any("hvinfo" in d for d in devs) or (not any("pci" in d for d in devs) and "kvm_pci_reservations" in data[2]):
        return LAYOUT_HVINFO
    return LAYOUT_PCI


# Ganeti's scsi_controller_type -> the QEMU driver it names (QEMU's alias lsi is lsi53c895a)
_SCSI_CONTROLLERS = {"lsi": "lsi53c895a", **{drv: drv for drv in hvp.CONTROLLER_DRIVERS}}


def _controllers(argv: list[str]) -> list[dict[str, Any]]:
    """The SCSI controller Ganeti puts in kvm_cmd (``-device <type>,id=scsi``), recorded for its bus.

    It stays in ``kvm_cmd`` too, where it is: QEMU placed it in command-line
    order among kvm_cmd's other unaddressed devices (``argv.controller_argv``
    does not add it again).
    """
    for group in groups_of(argv):
        if _opt_name(group[0]) == "device" and len(group) > 1:
            parts = split_opts(group[1])
            if parts[0] in _SCSI_CONTROLLERS and f"id={hvp.SCSI_CONTROLLER_ID}" in parts[1:]:
                info = {"driver": _SCSI_CONTROLLERS[parts[0]], "id": hvp.SCSI_CONTROLLER_ID, "bus": hvp.PCI_BUS}
                addr = [p[5:] for p in parts[1:] if p.startswith("addr=")]
                if addr:
                    info["addr"] = addr[0]
                return [{"kind": "scsi", "hvinfo": info}]
    return []


def read(data: list[Any]) -> dict[str, Any]:
    """A Ganeti runtime (any layout, see the module doc) -> a current (version 2) runtime dict.

    Written for version 2 directly: the version-1 step would move the SCSI
    controller out of ``kvm_cmd`` and change where QEMU places it.
    """
    if len(data) not in (3, 4) or not isinstance(data[0], list) or not isinstance(data[1], list) \
            or not isinstance(data[2], dict) or (len(data) == 4 and not isinstance(data[3], list)):
        raise KvmError("legacy runtime must be [kvm_cmd, [nic, ...], hvparams] or "
                       "[kvm_cmd, [nic, ...], hvparams, [[disk, link, uri], ...]] (Ganeti's layouts)")
    notes: list[str] = []
    plumbing: list[list[str]] = []
    if len(data) == 3:
        notes.append("Ganeti runtime with three elements (before 2.10): its disks are -drive options in kvm_cmd")
    original = _strings(data[0])
    hv, legacy = _hvparams(data[2], original, notes)
    reservations_default = legacy.pop("reservations_default", False)
    argv, drives = _rewrite_kvm_cmd(original, notes, plumbing)
    nics, fixed_nics = _nics(data[1], hv, notes)
    disks, fixed_disks = _disks(data[3] if len(data) == 4 else [], hv, notes)
    queues = data[2].get("virtio_net_queues")
    if isinstance(queues, int) and not isinstance(queues, bool) and queues > 1:
        notes.append(f"hvparam virtio_net_queues={queues}: multiqueue NICs cannot be started by this collection")
    name = _first_field(_argv_value(original, "name"), "guest")
    runtime: dict[str, Any] = {
        "version": 2,
        "name": name or None,
        "uuid": _argv_value(original, "uuid"),
        "memory": _mib(_argv_value(original, "m")),
        "vcpus": _mib(_first_field(_argv_value(original, "smp"), "cpus")),
        "hvparams": hv,
        "legacy_hvparams": legacy,
        "kvm_cmd": argv,
        "kvm_extra": [],
        "controllers": _controllers(argv),
        "disks": disks,
        "nics": nics,
        "ganeti": {"layout": layout_of(data), "plumbing": plumbing, "notes": notes,
                   # the file predates kvm_pci_reservations: adoption packs new devices after QEMU's own
                   "reservations_default": reservations_default},
    }
    # Tail order matters for QEMU's placement: NICs, then disks of the disk list, then kvm_cmd's drives.
    fixed = fixed_nics + fixed_disks + drives
    if fixed:
        runtime["fixed"] = fixed
    return runtime


def notes(runtime: dict[str, Any]) -> list[str]:
    """What reading a Ganeti runtime changed or assumed, for kvm_instance_info."""
    meta = runtime.get("ganeti")
    return list(meta.get("notes", [])) if isinstance(meta, dict) else []


# -- validation of what this module adds to a runtime ---------------------------------------

_DRIVE_KEYS = frozenset({"if", "index", "bus", "unit", "cache", "aio", "discard", "serial", "werror", "rerror",
                         "detect-zeroes", "copy-on-read", "snapshot"})
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
_FIXED_NIC_DRIVERS = frozenset(hvp.NIC_DRIVERS.values())
_FIXED_DISK_DRIVERS = frozenset({*hvp.DISK_DRIVERS.values()})
CACHE_MODES = ("none", "writeback", "writethrough", "directsync", "unsafe", "default")


def _abs_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(ord(c) < 0x20 for c in value):
        raise KvmError(f"{what} {value!r} must be an absolute path")
    return value


def validate_extras(runtime: dict[str, Any]) -> None:
    """Strict checks of ``fixed``, ``adopted`` and the ``ganeti`` side data (called by ``upgrade.validate``)."""
    for key in ("ganeti", "legacy_hvparams"):
        if key in runtime and not isinstance(runtime[key], dict):
            raise KvmError(f"runtime field {key!r} must be a mapping")
    notes = runtime.get("ganeti", {}).get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise KvmError("runtime field 'ganeti.notes' must be a list of strings")
    for kind in ("disks", "nics"):
        for pos, dev in enumerate(runtime.get(kind, [])):
            if "ganeti" in dev and not isinstance(dev["ganeti"], dict):
                raise KvmError(f"runtime {kind[:-1]} {pos}: field 'ganeti' must be a mapping")
    adopted = runtime.get("adopted")
    if adopted is not None:
        if not isinstance(adopted, dict) or set(adopted) - {"runtime", "qmp", "pidfile", "started"}:
            raise KvmError("runtime field 'adopted' must be a mapping of runtime, qmp, pidfile and started")
        started = adopted.get("started")
        if started is not None and (isinstance(started, bool) or not isinstance(started, int) or started < 0):
            raise KvmError("runtime adopted started must be a start time (a non-negative integer)")
        for key in ("qmp", "pidfile"):
            _abs_path(adopted.get(key), f"runtime adopted {key}")
        if adopted.get("runtime") is not None:
            _abs_path(adopted["runtime"], "runtime adopted runtime")
    fixed = runtime.get("fixed", [])
    if not isinstance(fixed, list):
        raise KvmError("runtime field 'fixed' must be a list")
    netdevs: set[str] = set()
    for pos, dev in enumerate(fixed):
        where = f"runtime fixed device {pos}"
        if not isinstance(dev, dict) or dev.get("kind") not in ("disk", "nic"):
            raise KvmError(f"{where} must be a mapping with kind disk or nic")
        dev["uuid"] = hvi.check_uuid(dev.get("uuid"), f"{where} uuid")
        if "ganeti" in dev and not isinstance(dev["ganeti"], dict):
            raise KvmError(f"{where}: field 'ganeti' must be a mapping")
        if dev["kind"] == "nic":
            if not isinstance(dev.get("mac"), str) or not devices.MAC_RE.match(dev["mac"]):
                raise KvmError(f"{where}: mac {dev.get('mac')!r} is not a MAC address")
            if dev.get("driver") not in _FIXED_NIC_DRIVERS:
                raise KvmError(f"{where}: driver {dev.get('driver')!r} is not a NIC driver this collection knows")
            hvi.check_id(dev.get("netdev"))
            if dev["netdev"] in netdevs:
                raise KvmError(f"{where}: netdev {dev['netdev']} is used twice")
            netdevs.add(dev["netdev"])
            try:
                dev["network"] = devices.network_record(dev.get("network"))
            except KvmError as err:
                raise KvmError(f"{where}: {err.msg}") from None
            continue
        if dev.get("path") is not None:
            _abs_path(dev["path"], f"{where} path")
        if dev.get("uri") is not None and not isinstance(dev["uri"], str):
            raise KvmError(f"{where}: uri must be a string")
        if dev.get("format", "raw") not in devices.DISK_FORMATS or dev.get("mode", "rw") not in devices.DISK_MODES:
            raise KvmError(f"{where}: format must be one of {', '.join(devices.DISK_FORMATS)} and mode rw or ro")
        dev.setdefault("format", "raw")
        dev.setdefault("mode", "rw")
        if dev.get("type") is not None and dev["type"] not in hvp.DISK_DRIVERS:
            raise KvmError(f"{where}: type {dev['type']!r} is not a disk_type")
        if dev.get("render") == "device":
            if dev.get("driver") not in _FIXED_DISK_DRIVERS:
                raise KvmError(f"{where}: driver {dev.get('driver')!r} is not a disk driver this collection knows")
            if dev.get("cache") is not None and dev["cache"] not in CACHE_MODES:
                raise KvmError(f"{where}: cache {dev['cache']!r} is not one of {', '.join(CACHE_MODES)}")
        elif dev.get("render") == "drive":
            drive = dev.get("drive")
            if not isinstance(drive, dict) or not drive:
                raise KvmError(f"{where}: drive options must be a mapping")
            for key, value in drive.items():
                if key not in _DRIVE_KEYS or not isinstance(value, str) or not _SAFE_VALUE.match(value):
                    raise KvmError(f"{where}: drive option {key}={value!r} is not one this collection passes on")
            at = dev.get("at")
            if at is not None and (isinstance(at, bool) or not isinstance(at, int) or not 1 <= at <= len(runtime["kvm_cmd"])):
                raise KvmError(f"{where}: position {at!r} is not inside kvm_cmd")
        else:
            raise KvmError(f"{where}: render must be device or drive")


# -- export ----------------------------------------------------------------------------

EXPORT_LAYOUTS = ("3", "2")
# Options Ganeti adds when it executes a runtime, never stores in kvm_cmd.
_EXEC_TIME = frozenset({"qmp", "incoming", "S", "runas", "run-with", "k"})
_GANETI_KNOWN = ("disk_type", "nic_type", "scsi_controller_type", "kvm_pci_reservations", "cpu_type", "kernel_path",
                 "initrd_path", "kernel_args", "kvm_extra")


def _export_hvparams(runtime: dict[str, Any], layout: str) -> dict[str, Any]:
    ours = runtime["hvparams"]
    out: dict[str, Any] = {}
    for key in _GANETI_KNOWN:
        if key in ours:
            out[key] = "" if ours[key] is None else ours[key]
    if layout == "2":
        out.pop("scsi_controller_type", None)
        out.pop("kvm_pci_reservations", None)
    out.update(runtime.get("legacy_hvparams") or {})
    return out


def _plumbing(runtime: dict[str, Any], name: str, run_dir: str) -> list[str]:
    meta: dict[str, Any] = runtime["ganeti"] if isinstance(runtime.get("ganeti"), dict) else {}
    kept = meta.get("plumbing")
    if kept:  # what the import dropped, less what Ganeti adds at every start itself
        return [arg for group in kept if _opt_name(group[0]) not in _EXEC_TIME for arg in group]
    ctrl = f"{run_dir}/kvm-hypervisor/ctrl/{name}"
    return ["-pidfile", f"{run_dir}/kvm-hypervisor/pid/{name}", "-daemonize",
            "-monitor", f"unix:{ctrl}.monitor,server,nowait", "-serial", f"unix:{ctrl}.serial,server,nowait"]


def _export_kvm_cmd(runtime: dict[str, Any], name: str, run_dir: str) -> list[Any]:
    argv = list(runtime["kvm_cmd"])
    if argv[-2:] == ["-net", "none"]:
        argv = argv[:-2]  # Ganeti adds it itself when there is no NIC
    for dev in sorted((d for d in runtime.get("fixed", []) if d.get("render") == "drive" and d.get("at")),
                      key=lambda d: -d["at"]):
        opts = [f"file={dev['path']}", f"format={dev['format']}", *(f"{k}={v}" for k, v in dev["drive"].items())]
        if dev["mode"] == "ro":
            opts.append("readonly=on")
        argv[dev["at"]:dev["at"]] = ["-drive", join_opts(opts)]
    for dev in runtime.get("fixed", []):
        if dev.get("kind") == "disk" and dev.get("render") == "device" and dev.get("driver") == hvp.DISK_DRIVERS["paravirtual"] \
                and not dev.get("ganeti"):
            opts = [f"file={dev['path']}", f"format={dev['format']}", "if=virtio"]
            if dev.get("cache"):
                opts.append(f"cache={dev['cache']}")
            if dev["mode"] == "ro":
                opts.append("readonly=on")
            argv += ["-drive", join_opts(opts)]
    argv += runtime.get("kvm_extra") or []  # Ganeti keeps kvm_extra inside kvm_cmd, and a target runs only kvm_cmd
    argv[1:1] = _plumbing(runtime, name, run_dir)
    out: list[Any] = []
    for pos, arg in enumerate(argv):
        out.append(int(arg) if pos > 0 and argv[pos - 1] == "-m" and arg.isdigit() else arg)
    return out


def _export_device(dev: dict[str, Any], kind: str, layout: str, running: bool, reasons: list[str]) -> dict[str, Any]:
    """A disk's or NIC's Ganeti dict; why Ganeti cannot record it goes to ``reasons``."""
    info = dev["hvinfo"]
    what = f"{kind[:-1]} {info['id']}"
    base = {**dev.get("ganeti", {}), "uuid": dev["uuid"]}
    base.pop("link", None)
    if kind == "nics":
        base["mac"] = dev["mac"]
    else:
        base["mode"] = dev["mode"]
        if dev.get("format", "raw") != "raw":
            reasons.append(f"{what} is {dev['format']}; Ganeti only runs raw disks")
    pci = hvi.is_pci(info) and info["bus"] == hvp.PCI_BUS and hvi.pci_addr(info)[1] == 0  # type: ignore[index]
    scsi = hvi.is_scsi(info) and info["bus"] == hvp.SCSI_BUS and info["channel"] == 0 and info["lun"] == 0 \
        and info["scsi-id"] <= 15
    if layout == "2":
        if not pci:
            reasons.append(f"{what} sits on {info['bus']} and Ganeti 2.10-2.15 only records slots on {hvp.PCI_BUS}")
            return base
        slot = hvi.pci_slot(info)
        legacy_id = f"hot{kind[:-1]}-{dev['uuid'].split('-', maxsplit=1)[0]}-pci-{slot}"
        if running and info["id"] != legacy_id:
            reasons.append(f"{what} would be called {legacy_id} there (export a stopped instance, or to ganeti-3)")
        return {**base, "pci": slot}
    if not (pci or scsi):
        reasons.append(f"{what} sits at {hvi.where(info)}; Ganeti records only slots on {hvp.PCI_BUS} and "
                       f"targets 0-15 (channel 0, lun 0) on {hvp.SCSI_BUS}")
    return {**base, "hvinfo": dict(info)}


def _export_controllers(runtime: dict[str, Any], running: bool, reasons: list[str]) -> list[str]:
    """The ``-device`` Ganeti's kvm_cmd needs for the SCSI controller (if kvm_cmd lacks it); bridges and
    ports nobody uses are left out of a stopped instance (they only made room for hotplug)."""
    used = {dev["hvinfo"]["bus"] for kind in ("disks", "nics") for dev in runtime[kind]}
    in_kvm_cmd = {d for g in groups_of(runtime["kvm_cmd"]) if _opt_name(g[0]) == "device" and len(g) > 1
                  for d in [p[3:] for p in split_opts(g[1]) if p.startswith("id=")]}
    extra: list[str] = []
    for ctl in runtime.get("controllers", []):
        info = ctl["hvinfo"]
        if ctl["kind"] == "scsi" and info["id"] == hvp.SCSI_CONTROLLER_ID and "addr" not in info:
            if info["id"] not in in_kvm_cmd:
                extra += ["-device", join_opts([info["driver"], f"id={info['id']}"])]
        elif ctl["kind"] == "scsi":
            reasons.append(f"SCSI controller {info['id']} is a recorded PCI device (Ganeti has one SCSI controller, placed by QEMU)")
        elif info["id"] in used:
            reasons.append(f"devices sit on {ctl['kind']} {info['id']}")
        elif running:
            reasons.append(f"{ctl['kind']} {info['id']} is part of the running instance's device tree")
    return extra


def export(runtime: dict[str, Any], layout: str = "3", run_dir: str = DEFAULT_RUN_DIR, running: bool = False) -> list[Any]:
    """The runtime as Ganeti writes it: layout ``3`` (2.16-3.1, hvinfo) or ``2`` (2.10-2.15, pci slots).

    Refused (one KvmError naming every reason) when the instance does not fit
    the layout: a device not on ``pci.0`` (or, for 3, not a SCSI target 0-15
    on ``scsi.0``), a bridge, port or SCSI controller Ganeti cannot record, a
    q35 machine, a non-raw disk, or (``running``) an id Ganeti 2.x would
    derive differently. Unused bridges and ports of a stopped instance are
    left out. Fields kept from an imported Ganeti runtime come back; Ganeti's
    host plumbing is put back into ``kvm_cmd`` (the original options when
    imported, else Ganeti's paths under ``run_dir``).
    """
    if layout not in EXPORT_LAYOUTS:
        raise KvmError(f"Ganeti export layout {layout!r} is not one of {', '.join(EXPORT_LAYOUTS)}")
    name = runtime.get("name") or "instance"
    hvparams = runtime["hvparams"]
    reasons: list[str] = []
    if hvp.is_q35(hvparams):
        reasons.append(f"the machine is {hvparams['machine_type']} (Ganeti places devices on pci.0 of pc)")
    if layout == "2" and hvp.is_scsi(hvparams):
        reasons.append(f"disk_type {hvparams['disk_type']} needs Ganeti 2.16 or later (export to ganeti-3)")
    controller_args = _export_controllers(runtime, running, reasons)
    # QEMU-placed NICs first: they are the ones from before Ganeti placed devices itself.
    nics: list[dict[str, Any]] = []
    disks: list[list[Any]] = []
    for dev in runtime.get("fixed", []):
        base = {**dev.get("ganeti", {}), "uuid": dev["uuid"]}
        if dev["kind"] == "nic":
            entry = {**base, "mac": dev["mac"], **({"hvinfo": {}} if layout == "3" else {})}
            if dev.get("uuid_from_mac"):
                entry.pop("uuid")
            nics.append(entry)
        elif dev.get("ganeti"):  # a disk of Ganeti's disk list that QEMU placed
            disks.append([{**base, "mode": dev["mode"], **({"hvinfo": {}} if layout == "3" else {})}, dev.get("path"), dev.get("uri")])
    nics += [_export_device(n, "nics", layout, running, reasons) for n in runtime["nics"]]
    for disk in runtime["disks"]:
        link = disk.get("path") or (disk.get("ganeti") or {}).get("link")
        disks.append([_export_device(disk, "disks", layout, running, reasons), link, disk.get("uri")])
    if reasons:
        raise KvmError(f"cannot export to Ganeti {layout}.x: {'; '.join(reasons)}")
    kvm_cmd = _export_kvm_cmd(runtime, name, run_dir)
    return [kvm_cmd[:1] + controller_args + kvm_cmd[1:], nics, _export_hvparams(runtime, layout), disks]


def dumps(data: list[Any]) -> str:
    """Ganeti's serialization: one line of JSON and a newline."""
    return json.dumps(data) + "\n"
