# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named step boundaries where fault tests stop the module.

With ``KVMHV_FAULT_STOP=<step>[,<step>...]`` and ``KVMHV_FAULT_DIR=<dir>`` in
its environment, the module writes ``<dir>/<step>`` (holding its pid) when
it reaches that step and stops itself with SIGSTOP. A test then kills it
there, or changes the world (fills the disk) and lets it continue: faults
land exactly on a step, never on a timing guess. ``KVMHV_FAULT_MARK`` names
steps that only leave the marker. Without the variables a point costs two
dictionary lookups.
"""

from __future__ import annotations

import os
import signal


def _named(variable: str, step: str) -> bool:
    return step in os.environ.get(variable, "").split(",")


def point(step: str) -> None:
    stop = _named("KVMHV_FAULT_STOP", step)
    if not stop and not _named("KVMHV_FAULT_MARK", step):
        return
    marker_dir = os.environ.get("KVMHV_FAULT_DIR")
    if marker_dir:
        tmp = os.path.join(marker_dir, f".{step}.{os.getpid()}")
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
        os.rename(tmp, os.path.join(marker_dir, f"{step}.{os.getpid()}"))
    if stop:
        os.kill(os.getpid(), signal.SIGSTOP)
