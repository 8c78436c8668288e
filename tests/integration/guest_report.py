"""What the test guest sees, read from its serial log.

The guest (tests/guest) prints ``KVMHV-REPORT seq=N block=... net=...`` when
its devices change and every 2 s. Tests poll the log file for a report that
satisfies a predicate (polling a log in a test is fine; the collection itself
never sleeps).
"""

from __future__ import annotations

import functools
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GUEST_SCRIPT = Path(__file__).resolve().parents[1] / "guest" / "build-guest.sh"
KERNEL_ARGS = "console=ttyS0 quiet panic=-1 mitigations=off"
_LINE = re.compile(r"KVMHV-REPORT seq=(\d+) block=(\S*) net=(\S*)")


@dataclass(frozen=True)
class BlockDev:
    size_sectors: int
    hctl: str | None = None


@dataclass
class Report:
    seq: int
    block: dict[str, BlockDev] = field(default_factory=dict)
    net: dict[str, str] = field(default_factory=dict)

    def disks_by_size(self) -> dict[int, str]:
        """size in sectors -> guest device name (tests give disks distinct sizes)."""
        return {dev.size_sectors: name for name, dev in self.block.items()}

    def macs(self) -> set[str]:
        return set(self.net.values())


def parse_reports(text: str) -> list[Report]:
    reports = []
    for match in _LINE.finditer(text):
        block: dict[str, BlockDev] = {}
        for item in filter(None, match.group(2).split(",")):
            name, rest = [*item.split(":", 1), ""][:2]
            size, hctl = [*rest.split("@", 1), ""][:2]
            block[name] = BlockDev(int(size or 0), hctl or None)
        net = {}
        for item in filter(None, match.group(3).split(",")):
            ifname, mac = item.split(":", 1)
            net[ifname] = mac
        reports.append(Report(int(match.group(1)), block, net))
    return reports


def latest_report(log_path: str) -> Report | None:
    try:
        text = Path(log_path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    reports = parse_reports(text)
    return reports[-1] if reports else None


def wait_for_report(log_path: str, predicate: Callable[[Report], bool], timeout: float = 60.0,
                    after_seq: int = 0) -> Report:
    """The first report (newest first, seq > after_seq) that satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = latest_report(log_path)
        if last is not None and last.seq > after_seq and predicate(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"guest never reported the expected state within {timeout}s; last report: {last}")
        time.sleep(0.1)


@functools.lru_cache(maxsize=1)
def guest_dir() -> str:
    """Build (or reuse from the cache) the test guest; return its directory."""
    out = subprocess.run(["bash", str(GUEST_SCRIPT)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def guest_hvparams(**extra: object) -> dict[str, object]:
    """hvparams that boot the test guest under TCG."""
    base = guest_dir()
    return {"kernel_path": f"{base}/vmlinuz", "initrd_path": f"{base}/initrd.img",
            "kernel_args": KERNEL_ARGS, "accel": "tcg", **extra}
