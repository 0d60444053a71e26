"""One library's suite in one mode: a bounded pytest run, restarted past hung tests."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness_support.processes import run_bounded

from . import progress
from .environment import Environment
from .libraries import Library
from .modes import MODES
from .outcomes import CRASH, HANG, Outcome, read_junit

#: Variables of the calling shell that would change how the suites run.
_OUTSIDE_PYTEST_VARIABLES = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPATH")
#: Characters of stderr kept when a run dies.
_TAIL = 3000


@dataclass
class SuiteRun:
    library: str
    mode: str
    results: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0
    #: Why the run has fewer results than it should (a crash before the first
    #: test, a run that could not start), for the report.
    problem: str = ""


@dataclass(frozen=True)
class Limits:
    hang_after: float  # real seconds one test may take
    run_limit: float  # real seconds one pytest process may take
    restarts: int  # runs again past hung or crashed tests, at most


def pytest_command(
    env: Environment,
    library: Library,
    mode: str,
    scratch: Path,
    skip: list[str],
    only: list[str] | None = None,
) -> list[str]:
    """The pytest command line of ``library``'s suite (or of the tests ``only``
    names) in ``mode``."""
    command = [str(env.python), "-m", "pytest", *(library.paths if only is None else only)]
    command += ["-p", "compat.progress", *MODES[mode]]
    # junit's xunit1 flavour names each case's file (see outcomes.py).
    command += ["--junitxml", str(scratch / "junit.xml"), "-o", "junit_family=xunit1"]
    # Suites that measure coverage in their addopts: nothing is measured.
    command += ["--no-cov", "-q"]
    if library.needs_cacheprovider:
        command += ["-o", f"cache_dir={scratch / 'pytest-cache'}"]
    else:
        command += ["-p", "no:cacheprovider"]
    for key, value in library.ini.items():
        command += ["-o", f"{key}={value.split(':', 1)[0]}"]
    if library.markers is not None:
        command += ["-m", library.markers[0]]
    for nodeid in [*library.deselect, *skip]:
        command += ["--deselect", nodeid]
    return command


def _progress(log: Path) -> str | None:
    """The test that started and never ended, if any."""
    started: str | None = None
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            event, _, nodeid = line.partition(" ")
            if event == "start":
                started = nodeid
            elif event == "end" and nodeid == started:
                started = None
    return started


def run_suite(
    env: Environment,
    library: Library,
    mode: str,
    limits: Limits,
    only: list[str] | None = None,
) -> SuiteRun:
    """Run the suite (or only the node ids given) in ``mode``; a hung or
    crashed test is recorded as such and the suite run again without it."""
    run = SuiteRun(library.name, mode)
    source = env.sources[library.name]
    began = time.perf_counter()
    lost: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix=f"compat-{library.name}-{mode}-") as scratch_dir:
        scratch = Path(scratch_dir)
        for _attempt in range(limits.restarts + 1):
            for stale in ("junit.xml", "progress.log", "stacks.txt"):
                (scratch / stale).unlink(missing_ok=True)
            command = pytest_command(env, library, mode, scratch, list(lost), only)
            variables = {
                key: value
                for key, value in os.environ.items()
                if key not in _OUTSIDE_PYTEST_VARIABLES
            }
            variables.update(
                PYTHONDONTWRITEBYTECODE="1",
                PATH=f"{env.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                VIRTUAL_ENV=str(env.python.parent.parent),
                **{
                    progress.LOG_VARIABLE: str(scratch / "progress.log"),
                    progress.STACKS_VARIABLE: str(scratch / "stacks.txt"),
                    progress.HANG_VARIABLE: str(limits.hang_after),
                },
            )
            finished = run_bounded(command, cwd=str(source), env=variables, limit=limits.run_limit)
            junit = scratch / "junit.xml"
            if junit.exists() and not finished.timed_out:
                run.results = {**read_junit(junit), **lost}
                break
            hung = _progress(scratch / "progress.log")
            stacks_file = scratch / "stacks.txt"
            stacks = stacks_file.read_text(errors="replace") if stacks_file.exists() else ""
            if hung is None:
                run.problem = (
                    f"pytest exited with status {finished.returncode} outside any test "
                    f"and wrote no junit XML:\n{finished.stderr[-_TAIL:]}"
                )
                run.results = dict(lost)
                break
            kind = HANG if finished.timed_out or progress.HANG_MARK in stacks else CRASH
            seconds = limits.hang_after if kind == HANG else 0.0
            detail = (stacks or finished.stderr)[-_TAIL:]
            lost[hung] = Outcome(kind, seconds, detail)
        else:
            run.problem = f"gave up after {limits.restarts} restarts past hung or crashed tests"
            run.results = dict(lost)
    run.seconds = time.perf_counter() - began
    return run
