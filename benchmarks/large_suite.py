"""A large suite of small async tests, and a run of it that measures memory.

Each generated test makes an ``asyncio.Queue`` and a worker task and passes
20 items through it, sleeping 1 ms after each put: 21 tasks steps or so, the
shape of a typical unit test of asyncio code.  ``run_suite`` runs the suite
in a fresh pytest process under one of the :data:`MODES` and returns its peak
resident set size and test counts.  The peak is read in a second fresh
process that only starts pytest and waits for it
(``getrusage(RUSAGE_CHILDREN)`` covers the children of the process that asks,
so one parent per mode keeps the modes apart).

From the command line (``PYTHONPATH`` must name the tree to measure)::

    python benchmarks/large_suite.py --count 3000 --mode gate --mode off
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_COUNT = 3_000
TESTS_PER_MODULE = 100

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

TEST = """

async def test_queue_{index}():
    queue = asyncio.Queue()
    seen = []

    async def worker():
        while True:
            item = await queue.get()
            if item is None:
                return
            seen.append(item)

    task = asyncio.create_task(worker())
    for item in range(20):
        await queue.put(item)
        await asyncio.sleep(0.001)
    await queue.put(None)
    await task
    assert seen == list(range(20))
"""

#: The plugin's entry-point name (pyproject.toml, ``pytest11``).
ENTRY_POINT = "asyncspec"

#: Extra pytest arguments per mode; ``{html}`` is a page path in the run's
#: directory.
MODES: dict[str, list[str]] = {
    "off": ["-p", f"no:{ENTRY_POINT}"],
    "clock": ["-o", "asyncspec_clock=virtual"],
    "gate": ["-o", "asyncspec_max_blocking=0.05"],
    "trace": ["-o", "asyncspec_trace=on"],
    "trace_html": ["-o", "asyncspec_trace=on", "-o", "asyncspec_html={html}"],
}


def write_suite(directory: Path, count: int = DEFAULT_COUNT) -> None:
    """``count`` tests in modules of :data:`TESTS_PER_MODULE`, with a pytest.ini."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text(INI)
    for first in range(0, count, TESTS_PER_MODULE):
        body = "import asyncio\n" + "".join(
            TEST.format(index=index) for index in range(first, min(first + TESTS_PER_MODULE, count))
        )
        (directory / f"test_suite_{first // TESTS_PER_MODULE:04d}.py").write_text(body)


@dataclass
class SuiteRun:
    mode: str
    count: int
    peak_rss_kb: int
    passed: int
    failed: int
    exit_code: int
    #: pytest's last line ("3000 passed in 95.1s").
    summary: str


# Runs pytest as its only child and reports the child's peak RSS (Linux: KB)
# and the last line pytest printed (its summary).
_PARENT = """\
import json, resource, subprocess, sys
run = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
lines = run.stdout.strip().splitlines() or [""]
print(json.dumps({"exit_code": run.returncode, "peak_rss_kb": peak, "summary": lines[-1]}))
"""


def run_suite(directory: Path, mode: str, count: int) -> SuiteRun:
    """Run the suite in ``directory`` under ``mode`` in fresh processes."""
    args = [arg.format(html=directory / f"report-{mode}.html") for arg in MODES[mode]]
    command = [
        *(sys.executable, "-m", "pytest", str(directory), "-q"),
        *("-p", "no:cacheprovider", "-c", str(directory / "pytest.ini")),
        *args,
    ]
    # Bytecode as in an installed environment: written once, then reused.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", _PARENT, *command],
        capture_output=True,
        text=True,
        env=env,
        # Not the caller's directory: a source tree there would shadow PYTHONPATH.
        cwd=directory,
        check=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return SuiteRun(
        mode=mode,
        count=count,
        peak_rss_kb=figures["peak_rss_kb"],
        passed=_count(figures["summary"], "passed"),
        failed=_count(figures["summary"], "failed") + _count(figures["summary"], "error"),
        exit_code=figures["exit_code"],
        summary=figures["summary"],
    )


def _count(summary: str, word: str) -> int:
    found = re.search(rf"(\d+) {word}", summary)
    return int(found.group(1)) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--mode", action="append", choices=sorted(MODES))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncspec-large-suite-") as tmp:
        directory = Path(tmp)
        write_suite(directory, args.count)
        for _ in range(args.repeat):
            for mode in args.mode or list(MODES):
                print(json.dumps(asdict(run_suite(directory, mode, args.count))), flush=True)


if __name__ == "__main__":
    main()
