"""The one polling loop of the integration tests, for states nothing announces (a file appearing, a process state)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``check`` until it returns something truthy and return that; AssertionError naming ``what`` at the deadline.

    ``check`` may raise AssertionError itself to stop early (the thing waited for can no longer happen).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s")
        time.sleep(interval)
