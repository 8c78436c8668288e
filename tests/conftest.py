"""Make the collection importable as ansible_collections.kvmhv.qemu for plain pytest runs.

A checkout gets a link in .build/collections; a copy that already sits at
ansible_collections/kvmhv/qemu (tests/unit/mutants.py makes one) is imported
from where it is, so nothing of another tree can come in.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if REPO.parts[-3:] == ("ansible_collections", "kvmhv", "qemu"):
    COLLECTIONS = REPO.parents[2]
else:
    COLLECTIONS = REPO / ".build" / "collections"
    LINK = COLLECTIONS / "ansible_collections" / "kvmhv" / "qemu"
    if not LINK.exists():
        LINK.parent.mkdir(parents=True, exist_ok=True)
        LINK.symlink_to(REPO)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
