# -*- coding: utf-8 -*-
# Copyright: (c) 2026, kvmhv.qemu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module invocation as the operations see it, without ``AnsibleModule``.

``common.run`` builds it from the module and awaits the operation once: the
only place a module call crosses from synchronous code into the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """Parameters, check mode, diff mode, and the warnings an operation collects."""

    params: dict[str, Any]
    check: bool = False
    diff: bool = False
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
