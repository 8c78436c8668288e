# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """What check mode and diff mode mean for every kvmhv.qemu module; each module adds its C(support) and C(details)."""

    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Plans the operation and reports whether it would change anything, without touching QEMU or the runtime files.
  diff_mode:
    description: Reports the state before and after the change (or the planned change in check mode).
"""
