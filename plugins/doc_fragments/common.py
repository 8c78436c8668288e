# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options every kvmhv.qemu module takes (module_utils/common.py COMMON_ARGS)."""

    DOCUMENTATION = r"""
options:
  runtime_dir:
    description:
      - Directory of runtime files, QMP sockets, pid files and logs (created with mode 0700 by the modules that start or
        change an instance).
      - Used only when it belongs to the module's user, is not writable by group or others, is not a symlink and
        no parent lets another user replace it; otherwise the module fails naming the owner, mode and fix.
      - Set it for all modules at once with C(module_defaults) and the C(group/kvmhv.qemu.kvm) action group.
    type: path
    default: /run/kvmhv
  qemu_binary:
    description:
      - QEMU binary used for new starts. Every module accepts it so the C(kvm) action group can set it.
    type: str
    default: qemu-system-x86_64
  qemu_user:
    description:
      - System user QEMU runs as (the C(kvmhv.qemu.kvm_host) role creates C(kvmhv-qemu)). QEMU is started directly
        as that user under C(-sandbox) and gets every file, socket and tap from the module as a descriptor.
      - C(root) runs QEMU as root, without the privilege separation, for hosts that need it.
    type: str
    default: kvmhv-qemu
requirements:
  - qemu.qmp
"""
