"""Loaders for reference layers and legacy social.brussels JSON (strict and transactional).

A loader either loads a whole source or changes nothing: every problem found is collected with the
record, field, value and reason, and the transaction is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    source: str  # file name
    record: str  # record id or row number
    field: str
    value: object
    reason: str

    def __str__(self) -> str:
        value = repr(self.value)
        if len(value) > 80:
            value = value[:77] + "..."
        return f"{self.source}: record {self.record}, field {self.field} = {value}: {self.reason}"


class LoadError(Exception):
    """Raised when a source cannot be loaded; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s), nothing loaded:\n  {shown}{more}")
