# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The exceptions the library raises for anything an operator can fix.

Modules turn them into ``fail_json(msg=str(err))``: a one-line reason, never
a traceback. ``step`` names the hotplug/migration step that failed, if any;
``error_class`` keeps QMP's own error class (``DeviceNotFound``,
``GenericError``, ...) so callers decide on it instead of on English text.
"""

from __future__ import annotations


class KvmError(Exception):
    """A clear, one-line, operator-facing error."""

    def __init__(self, msg: str, step: str | None = None, error_class: str | None = None) -> None:
        self.msg = " ".join(str(msg).split())
        self.step = step
        self.error_class = error_class
        super().__init__(f"{step}: {self.msg}" if step else self.msg)

    def with_step(self, step: str) -> KvmError:
        """The same error (same type and class) attributed to ``step``."""
        return type(self)(self.msg, step, self.error_class)


class KvmTimeout(KvmError):
    """A deadline passed: QEMU or the guest did not answer in time."""


class QmpClosed(KvmError):
    """The QMP connection dropped: QEMU is gone."""


DEVICE_NOT_FOUND = "DeviceNotFound"
