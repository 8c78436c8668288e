"""Hypothesis profiles: ``mutants`` (fixed examples, no example database) is what tests/unit/mutants.py runs with."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("mutants", derandomize=True, database=None)
