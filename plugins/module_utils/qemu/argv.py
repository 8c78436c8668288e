# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The QEMU command line, built as an argv list (never a shell string).

It has three parts so that migration can rebuild it on another host:
``kvm_cmd`` (fixed: machine, memory, cpus, kernel, SCSI controller) and
``kvm_extra`` are recorded in the runtime file; the devices come from the
recorded disks and NICs (their hvinfo); the host plumbing (QMP socket, pid
file, serial log, ``-daemonize``, ``-incoming``) is added at launch for the
host's own runtime directory.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import devices as devs
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp


def flatten(args: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested QMP arguments -> the dotted keys of QEMU's key=value syntax."""
    flat: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def fixed_argv(binary: str, name: str, uuid: str, memory: int, vcpus: int, hvparams: dict[str, Any]) -> list[str]:
    """Everything but devices, extras and host plumbing."""
    argv = [
        binary,
        "-name", hvi.escape(name),
        "-uuid", uuid,
        "-machine", hvi.options(hvparams["machine_type"], {"accel": hvparams["accel"]}),
        "-m", str(int(memory)),
        "-smp", str(int(vcpus)),
        "-nodefaults",
        "-display", "none",
    ]
    if hvparams.get("cpu_type"):
        argv += ["-cpu", hvi.escape(hvparams["cpu_type"])]
    if hvparams.get("kernel_path"):
        argv += ["-kernel", hvparams["kernel_path"]]  # a plain file name, not key=value
        if hvparams.get("initrd_path"):
            argv += ["-initrd", hvparams["initrd_path"]]
        if hvparams.get("kernel_args"):
            argv += ["-append", hvparams["kernel_args"]]
    if hvp.is_scsi(hvparams):
        # No address: QEMU places the controller inside the reserved window.
        argv += ["-device", hvi.options(hvp.scsi_controller(hvparams)[0], {"id": hvp.SCSI_CONTROLLER_ID})]
    return argv


def device_argv(disks: list[dict[str, Any]], nics: list[dict[str, Any]]) -> list[str]:
    """A block node + ``-device`` per disk, then ``-netdev`` + ``-device`` per NIC."""
    argv: list[str] = []
    for disk in disks:
        argv += ["-blockdev", hvi.options(None, flatten(devs.blockdev_args(disk)))]
        argv += ["-device", hvi.device_option(disk["hvinfo"], **devs.disk_device_extra(disk))]
    for nic in nics:
        netdev = devs.netdev_args(nic)
        if netdev:
            argv += ["-netdev", hvi.options(netdev.pop("type"), netdev)]
        argv += ["-device", hvi.device_option(nic["hvinfo"], **devs.nic_device_extra(nic))]
    return argv


def plumbing_argv(qmp_socket: str, pidfile: str, serial_log: str, incoming: str | None = None) -> list[str]:
    """Host-local options: QMP control socket, pid file, serial log, daemonize."""
    argv = [
        "-chardev", hvi.options("socket", {"id": "qmp", "path": qmp_socket, "server": True, "wait": False}),
        "-mon", "chardev=qmp,mode=control",
        "-chardev", hvi.options("file", {"id": "serial0", "path": serial_log}),
        "-serial", "chardev:serial0",
        "-pidfile", pidfile,
        "-daemonize",
    ]
    if incoming:
        argv += ["-incoming", incoming]
    return argv


def launch_argv(runtime: dict[str, Any], qmp_socket: str, pidfile: str, serial_log: str, incoming: str | None = None) -> list[str]:
    """The full argv for ``runtime`` on this host: fixed, plumbing, devices, extras last."""
    return [
        *runtime["kvm_cmd"],
        *plumbing_argv(qmp_socket, pidfile, serial_log, incoming),
        *device_argv(runtime["disks"], runtime["nics"]),
        *runtime.get("kvm_extra", []),
    ]
