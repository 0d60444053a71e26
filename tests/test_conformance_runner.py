"""The conformance runner (``python -m conformance``) finds what it is for.

It runs CPython's own test_asyncio modules on the stock loop and on ours; a
loop that breaks asyncio's timing must be reported, test by test, and a
faithful one must not.  Runs the small ``test_waitfor`` module only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

has_test_package = (
    subprocess.run(
        [sys.executable, "-c", "import test.test_asyncio.test_waitfor"], capture_output=True
    ).returncode
    == 0
)
pytestmark = pytest.mark.skipif(
    not has_test_package,
    reason="this Python was installed without its test package (test.test_asyncio)",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance", "-m", "test_waitfor", "--confirm", "1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_loop_whose_timers_never_fire_is_reported_test_by_test() -> None:
    # A test that waits for ever on the broken loop ends in its deadlock
    # check, or is a hang after 5 s.
    done = _run(
        "--loops", "tests.conformance_loops.broken:TimersNeverFireLoop", "--hang-after", "5"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIFFERS: " in done.stdout
    assert "test.test_asyncio.test_waitfor." in done.stdout
    assert "test(s) pass on the stock loop but not on ours" in done.stdout


def test_the_virtual_loop_passes_what_stock_passes_and_every_test_ran_on_it() -> None:
    done = _run("--loops", "virtual")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "conformance: 0 test(s) pass on the stock loop but not on ours" in done.stdout
    # Every test of the module really ran on each loop.
    row = next(line for line in done.stdout.splitlines() if "| test_waitfor |" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    tests = int(cells[2])
    assert tests > 0
    assert cells[3] == f"{tests} / {tests} / 0"


def test_an_unknown_loop_is_a_usage_error() -> None:
    done = _run("--loops", "nonsense")
    assert done.returncode == 2
    assert "is not virtual, exploring or module:Class" in done.stderr
