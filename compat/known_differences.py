"""Differences from the run without the plugin that are diagnosed true findings.

Key: (library, node id, mode).  Each entry says what the mode showed and why
that is the library's or the test's own behaviour, not the plugin's doing;
docs/compat.md lists the same entries.  A difference caused by the plugin is
never listed here: it is a defect, reproduced in compat/DEFECTS.md.  The
harness fails when a difference is missing here, and when an entry here no
longer occurs.
"""

from __future__ import annotations

from dataclasses import dataclass

BLOCKING = "true finding: blocking call in library"
FIFO = "true finding: relies on FIFO order"
LEAK = "true finding: leaks a task or coroutine"


@dataclass(frozen=True)
class Known:
    kind: str
    cause: str


KNOWN_DIFFERENCES: dict[tuple[str, str, str], Known] = {}
