# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A runtime back in Ganeti's layouts (a downgrade export): 2.16-3.1 (hvinfo) or 2.10-2.15 (pci slots).

Kept apart from the reader: it runs on any runtime (one read from Ganeti
or this collection's own), refuses what Ganeti cannot record, and gives
back what the import kept aside (Ganeti's fields, hvparams and plumbing).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp
from ansible_collections.kvmhv.qemu.plugins.module_utils.model.kinds import DISKS, KINDS, NICS, DeviceKind
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.ganeti.opts import groups_of, join_opts, opt_name, split_opts

DEFAULT_RUN_DIR = "/var/run/ganeti"
EXPORT_LAYOUTS = ("3", "2")
# Options Ganeti adds when it executes a runtime, never stores in kvm_cmd.
_EXEC_TIME = frozenset({"qmp", "incoming", "S", "runas", "run-with", "k"})
_GANETI_KNOWN = ("disk_type", "nic_type", "scsi_controller_type", "kvm_pci_reservations", "cpu_type", "kernel_path",
                 "initrd_path", "kernel_args", "kvm_extra")


def _export_hvparams(runtime: Mapping[str, Any], layout: str) -> dict[str, object]:
    ours = runtime["hvparams"]
    out: dict[str, object] = {}
    for key in _GANETI_KNOWN:
        if key in ours:
            out[key] = "" if ours[key] is None else ours[key]
    if layout == "2":
        out.pop("scsi_controller_type", None)
        out.pop("kvm_pci_reservations", None)
    out.update(runtime.get("legacy_hvparams") or {})
    return out


def _plumbing(runtime: Mapping[str, Any], name: str, run_dir: str) -> list[str]:
    meta: dict[str, Any] = runtime["ganeti"] if isinstance(runtime.get("ganeti"), dict) else {}
    kept = meta.get("plumbing")
    if kept:  # what the import dropped, less what Ganeti adds at every start itself
        return [arg for group in kept if opt_name(group[0]) not in _EXEC_TIME for arg in group]
    ctrl = f"{run_dir}/kvm-hypervisor/ctrl/{name}"
    return ["-pidfile", f"{run_dir}/kvm-hypervisor/pid/{name}", "-daemonize",
            "-monitor", f"unix:{ctrl}.monitor,server,nowait", "-serial", f"unix:{ctrl}.serial,server,nowait"]


def _export_kvm_cmd(runtime: Mapping[str, Any], name: str, run_dir: str) -> list[Any]:
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


def _export_device(dev: Mapping[str, Any], kind: DeviceKind, layout: str, running: bool, reasons: list[str]) -> dict[str, object]:
    """A disk's or NIC's Ganeti dict; why Ganeti cannot record it goes to ``reasons``."""
    info = dev["hvinfo"]
    what = f"{kind.noun} {info['id']}"
    base = {**dev.get("ganeti", {}), "uuid": dev["uuid"]}
    base.pop("link", None)
    if kind is NICS:
        base["mac"] = dev["mac"]
    else:
        base["mode"] = dev["mode"]
        if dev.get("format", "raw") != "raw":
            reasons.append(f"{what} is {dev['format']}; Ganeti only runs raw disks")
    addr = hvi.pci_addr(info)
    pci = addr is not None and info["bus"] == hvp.PCI_BUS and addr.function == 0
    scsi = hvi.is_scsi(info) and info["bus"] == hvp.SCSI_BUS and info["channel"] == 0 and info["lun"] == 0 \
        and info["scsi-id"] <= 15
    if layout == "2":
        if not pci:
            reasons.append(f"{what} sits on {info['bus']} and Ganeti 2.10-2.15 only records slots on {hvp.PCI_BUS}")
            return base
        slot = hvi.pci_slot(info)
        legacy_id = f"hot{kind.noun}-{dev['uuid'].split('-', maxsplit=1)[0]}-pci-{slot}"
        if running and info["id"] != legacy_id:
            reasons.append(f"{what} would be called {legacy_id} there (export a stopped instance, or to ganeti-3)")
        return {**base, "pci": slot}
    if not (pci or scsi):
        reasons.append(f"{what} sits at {hvi.where(info)}; Ganeti records only slots on {hvp.PCI_BUS} and "
                       f"targets 0-15 (channel 0, lun 0) on {hvp.SCSI_BUS}")
    return {**base, "hvinfo": dict(info)}


def _export_controllers(runtime: Mapping[str, Any], running: bool, reasons: list[str]) -> list[str]:
    """The ``-device`` Ganeti's kvm_cmd needs for the SCSI controller (if kvm_cmd lacks it); bridges and
    ports nobody uses are left out of a stopped instance (they only made room for hotplug)."""
    used = {dev["hvinfo"]["bus"] for kind in KINDS for dev in runtime[kind.name]}
    in_kvm_cmd = {d for g in groups_of(runtime["kvm_cmd"]) if opt_name(g[0]) == "device" and len(g) > 1
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


def export(runtime: Mapping[str, Any], layout: str = "3", run_dir: str = DEFAULT_RUN_DIR, running: bool = False) -> list[Any]:
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
    nics: list[dict[str, object]] = []
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
    nics += [_export_device(n, NICS, layout, running, reasons) for n in runtime["nics"]]
    for disk in runtime["disks"]:
        link = disk.get("path") or (disk.get("ganeti") or {}).get("link")
        disks.append([_export_device(disk, DISKS, layout, running, reasons), link, disk.get("uri")])
    if reasons:
        raise KvmError(f"cannot export to Ganeti {layout}.x: {'; '.join(reasons)}")
    kvm_cmd = _export_kvm_cmd(runtime, name, run_dir)
    return [kvm_cmd[:1] + controller_args + kvm_cmd[1:], nics, _export_hvparams(runtime, layout), disks]


def dumps(data: list[Any]) -> str:
    """Ganeti's serialization: one line of JSON and a newline."""
    return json.dumps(data) + "\n"
