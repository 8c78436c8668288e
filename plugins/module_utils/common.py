# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AnsibleModule glue every module shares: common options and the error boundary.

A module's ``main()`` is its argument spec and one ``run(module, op)``: the
operation (in ``ops/``) is a coroutine that gets a plain ``Call``
(parameters, check mode, diff mode, warnings) and returns the result dict,
so no operation ever touches ``AnsibleModule`` and each can be tested
without one. ``run`` is the one place a module call enters the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Mapping

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # type: ignore[import-untyped]

from ansible_collections.kvmhv.qemu.plugins.module_utils.errors import KvmError
from ansible_collections.kvmhv.qemu.plugins.module_utils.ops.call import Call
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu import qmp
from ansible_collections.kvmhv.qemu.plugins.module_utils.qemu.process import DEFAULT_QEMU_USER
from ansible_collections.kvmhv.qemu.plugins.module_utils.store.rundir import DEFAULT_RUNTIME_DIR

COMMON_ARGS: dict[str, dict[str, object]] = {
    "runtime_dir": {"type": "path", "default": DEFAULT_RUNTIME_DIR},
    "qemu_binary": {"type": "str", "default": "qemu-system-x86_64"},
    "qemu_user": {"type": "str", "default": DEFAULT_QEMU_USER},
}

# How long an unplug waits for the guest (kvm_instance's convergence and both hotplug modules).
UNPLUG_TIMEOUT: dict[str, object] = {"type": "int", "default": 30}

# Options of both hotplug modules (doc fragment kvmhv.qemu.hotplug).
HOTPLUG_ARGS: dict[str, dict[str, object]] = {
    "instance": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "unplug_timeout": UNPLUG_TIMEOUT,
}

# Suboptions of a disk and a NIC, shared by kvm_instance and the hotplug modules
# (doc fragments kvmhv.qemu.devices.disk, .disks, .nic and .nics).
DISK_OPTIONS: dict[str, dict[str, object]] = {
    "path": {"type": "path"},
    "uri": {"type": "str"},
    "format": {"type": "str", "choices": ["raw", "qcow2"], "default": "raw"},
    "mode": {"type": "str", "choices": ["rw", "ro"]},
    "uuid": {"type": "str"},
    "type": {"type": "str", "choices": ["paravirtual", "scsi-hd", "scsi-cd", "scsi-block", "scsi-generic", "ide", "scsi"]},
}
NIC_OPTIONS: dict[str, dict[str, object]] = {"mac": {"type": "str"}, "uuid": {"type": "str"}, "network": {"type": "dict"}}

# Rules between a disk's suboptions, checked by the argument spec (a disk is a file or a uri; an empty
# scsi-cd is named by its uuid alone); and between a hotplugged NIC's (it is found by uuid or MAC).
DISK_RULES: dict[str, list[list[str]]] = {"mutually_exclusive": [["path", "uri"]], "required_one_of": [["path", "uri", "uuid"]]}
NIC_RULES: dict[str, list[list[str]]] = {"required_one_of": [["mac", "uuid"]]}


def new_module(argument_spec: Mapping[str, Any], **kwargs: Any) -> AnsibleModule:
    """An AnsibleModule with the common options; fails cleanly without qemu.qmp."""
    module = AnsibleModule(argument_spec={**COMMON_ARGS, **argument_spec}, supports_check_mode=True, **kwargs)
    if not qmp.HAS_QMP:
        module.fail_json(msg=missing_required_lib("qemu.qmp"), exception=qmp.QMP_IMPORT_ERROR)
    return module


def run(module: AnsibleModule, operation: Callable[[Call], Coroutine[Any, Any, Mapping[str, object]]]) -> None:
    """Run ``operation`` to completion and exit with its result; a KvmError becomes a one-line failure."""
    call = Call(module.params, module.check_mode, module._diff)
    try:
        result = asyncio.run(operation(call))
    except KvmError as err:
        for message in call.warnings:
            module.warn(message)
        module.fail_json(msg=str(err))
    for message in call.warnings:
        module.warn(message)
    module.exit_json(**result)
