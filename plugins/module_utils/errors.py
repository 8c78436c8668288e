# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type the library raises for anything an operator can fix.

Modules turn it into ``fail_json(msg=str(err))``: a one-line reason, never a
traceback. ``step`` names the hotplug/migration step that failed, if any.
"""

from __future__ import annotations


class KvmError(Exception):
    """A clear, one-line, operator-facing error."""

    def __init__(self, msg: str, step: str | None = None) -> None:
        self.msg = " ".join(str(msg).split())
        self.step = step
        super().__init__(f"{step}: {self.msg}" if step else self.msg)
