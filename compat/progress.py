"""A pytest plugin loaded into each suite run (``-p compat.progress``): names a hung test.

junit XML is written when a run ends, so a run that hangs leaves none.  This
plugin writes each test's node id to a file as it starts and as it ends, and
arms a watchdog per test that ends the process (with every thread's stack on
stderr) when one test runs longer than allowed.  The orchestrator then knows
which test hung and runs the suite again without it.  It changes nothing
else, and is loaded in every mode, the run without the plugin included.
"""

from __future__ import annotations

import faulthandler
import os
from typing import IO

import pytest

LOG_VARIABLE = "COMPAT_PROGRESS_LOG"
HANG_VARIABLE = "COMPAT_HANG_AFTER"
#: Where the watchdog writes the stacks: pytest captures file descriptor 2
#: while a test runs, so stderr would lose them.
STACKS_VARIABLE = "COMPAT_HANG_STACKS"
#: The watchdog's header line, which tells a hang from a crash.
HANG_MARK = "Timeout ("

_log: IO[str] | None = None
_stacks: IO[str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _log, _stacks
    # Both stay open for the whole run: the watchdog may write at any moment.
    if os.environ.get(LOG_VARIABLE):
        _log = open(os.environ[LOG_VARIABLE], "a", encoding="utf-8")  # noqa: SIM115
    if os.environ.get(STACKS_VARIABLE):
        _stacks = open(os.environ[STACKS_VARIABLE], "w", encoding="utf-8")  # noqa: SIM115


def _write(event: str, nodeid: str) -> None:
    if _log is not None:
        _log.write(f"{event} {nodeid}\n")
        _log.flush()


def pytest_runtest_logstart(nodeid: str) -> None:
    _write("start", nodeid)
    # Armed from the start of setup to the end of teardown: a fixture that
    # never finishes is that test's hang too.
    if _stacks is not None:
        limit = float(os.environ.get(HANG_VARIABLE, "120"))
        faulthandler.dump_traceback_later(limit, exit=True, file=_stacks)


def pytest_runtest_logfinish(nodeid: str) -> None:
    if _stacks is not None:
        faulthandler.cancel_dump_traceback_later()
    _write("end", nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    for handle in (_log, _stacks):
        if handle is not None:
            handle.close()
