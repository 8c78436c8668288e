# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fixed part of an instance's command line (``kvm_cmd``): recorded in the runtime, the same on every host.

Pure: it is part of the record a new runtime is built from (``store.construct``);
``qemu.argv`` adds the devices and this host's plumbing at launch.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvinfo as hvi
from ansible_collections.kvmhv.qemu.plugins.module_utils.model import hvparams as hvp


def fixed_argv(binary: str, name: str, uuid: str, memory: int, vcpus: int, hvparams: Mapping[str, Any]) -> list[str]:
    """Everything but devices, extras and host plumbing (the runtime's ``kvm_cmd``)."""
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
        argv += ["-cpu", hvparams["cpu_type"]]  # not QemuOpts: checked against a strict grammar instead
    if hvparams.get("kernel_path"):
        argv += ["-kernel", hvparams["kernel_path"]]  # plain file names and text, not key=value
        if hvparams.get("initrd_path"):
            argv += ["-initrd", hvparams["initrd_path"]]
        if hvparams.get("kernel_args"):
            argv += ["-append", hvparams["kernel_args"]]
    if hvp.is_q35(hvparams):
        # Native PCIe hotplug on the root ports (QEMU's default on q35 is ACPI hotplug).
        argv += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    return argv
