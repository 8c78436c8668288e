"""The fleet tests import fleet.py and the integration helpers (guest reports) by module name."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "integration"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
