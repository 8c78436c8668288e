"""The fixed cost of one call (issue 17): a single PCI and SCSI add against their raw-QMP floor, and an
ad-hoc ``ansible -m kvmhv.qemu.kvm_disk_hotplug`` against ``ansible -m ping``, measured in one run.

Reuses run.py's measurements (same guest, same floors, alternating samples) without the long scale and
convergence runs; writes benchmarks/RESULTS-fixed-cost.md. ``make bench-fixed`` runs it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import run

OUT = Path(__file__).resolve().parent / "RESULTS-fixed-cost.md"


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="kvb-", dir="/dev/shm")  # tmpfs, like /run/kvmhv on a host
    images = tempfile.mkdtemp(prefix="kvb-img-", dir="/var/tmp")
    try:
        pci = run.bench_hotplug("pci", tmp, images)
        scsi = run.bench_hotplug("scsi", tmp, images)
        ans = run.bench_ansible(tmp, images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(images, ignore_errors=True)
    rows = [("PCI add (kvm_disk_hotplug's library call)", pci["add"], pci["add_floor"], "raw QMP: add-fd, blockdev-add, device_add, query-block"),
            ("SCSI add", scsi["add"], scsi["add_floor"], "the same on scsi.0"),
            ("ansible -m kvmhv.qemu.kvm_disk_hotplug", ans["task"], ans["floor"], "ansible -m ping")]
    lines = ["# Fixed cost of one call", "", f"`python benchmarks/fixed_cost.py` ({run.REPEAT} samples per add, median and range).", "",
             "| operation | median | floor | ratio | floor is |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {run.fmt(got)} | {run.fmt(floor)} | {run.ratio(got, floor)}x | {what} |" for name, got, floor, what in rows]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
