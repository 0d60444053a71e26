"""Run CPython's test_asyncio on the stock loop and on ours; list what differs.

    python -m conformance                               # every module, this Python
    python -m conformance --python 3.10 3.13 -m test_tasks test_streams
    python -m conformance --report docs/conformance-results.md

Exit status: 0 when every test that passes on the stock loop passes on ours
(or is listed, with its reason, in ``conformance/known_differences.py``), 1
when some do not, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness_support.processes import run_bounded

from .harness import LOOPS
from .known_differences import KNOWN_DIFFERENCES

ROOT = Path(__file__).resolve().parent.parent
#: Modules of test_asyncio that test Windows-only loops, or nothing a loop runs.
_NOT_FOR_THIS_PLATFORM = {"test_windows_events", "test_windows_utils", "test_proactor_events"}
#: The part that .ci/run checks on every push (the issue's "fits in CI" set).
CI_MODULES = (
    "test_selector_events",
    "test_streams",
    "test_subprocess",
    "test_tasks",
    "test_timeouts",
    "test_waitfor",
)
PASSED = ("pass", "skip")
#: Real seconds a whole module may take on one loop before it counts as hung.
_MODULE_LIMIT = 900.0


@dataclass
class TestResult:
    outcome: str
    ran_on_loop: bool
    seconds: float
    detail: str


@dataclass
class ModuleRun:
    python: str
    module: str
    loop: str
    results: dict[str, TestResult] = field(default_factory=dict)
    seconds: float = 0.0


def find_python(version: str) -> str:
    """The interpreter for ``version`` ("current", "3.12", or a path)."""
    if version == "current":
        return sys.executable
    if os.sep in version:
        return version
    # pyenv's own builds first: its shims on PATH answer only for the
    # versions a project selected, and fail for the others.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    if candidates:
        return str(candidates[0])
    found = shutil.which(f"python{version}")
    if found:
        return found
    raise SystemExit(
        f"conformance: no interpreter for Python {version} (looked for "
        f"python{version} on PATH and under {pyenv_root}/versions); install it "
        "or pass its path to --python"
    )


def version_of(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_modules(python: str) -> list[str]:
    """The test_asyncio modules of ``python``'s own test package."""
    code = (
        "import os, test.test_asyncio as p; d = os.path.dirname(p.__file__); "
        "print(' '.join(sorted(f[:-3] for f in os.listdir(d) "
        "if f.startswith('test_') and f.endswith('.py'))))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(
            f"conformance: {python} has no test.test_asyncio package (its "
            "standard library was installed without the test suite); use a "
            "python.org or pyenv build.\n" + out.stderr[-2000:]
        )
    return [name for name in out.stdout.split() if name not in _NOT_FOR_THIS_PLATFORM]


def _read(path: Path) -> tuple[dict[str, TestResult], str | None, bool]:
    """Finished results, the test that started and never ended, and whether done."""
    results: dict[str, TestResult] = {}
    started: str | None = None
    done = False
    if not path.exists():
        return results, None, False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the process ending
            continue
        if row["event"] == "start":
            started = row["id"]
        elif row["event"] == "end":
            results[row["id"]] = TestResult(
                row["outcome"], row["ran_on_loop"], row["seconds"], row["detail"]
            )
            if row["id"] == started:
                started = None
        elif row["event"] == "done":
            done = True
    return results, started, done


def run_module(
    python: str, module: str, loop: str, *, hang_after: float, only: Iterable[str] | None = None
) -> ModuleRun:
    """Run one module on one loop, starting it again after every hang or crash."""
    run = ModuleRun(python, module, loop)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conformance-") as scratch:
        out = Path(scratch) / "results.jsonl"
        skip = Path(scratch) / "skip.txt"
        only_file = None
        if only is not None:
            only_file = Path(scratch) / "only.txt"
            only_file.write_text("\n".join(only), encoding="utf-8")
        lost: dict[str, TestResult] = {}
        while True:
            skip.write_text("\n".join([*_read(out)[0], *lost]), encoding="utf-8")
            command = [
                python,
                "-X",
                "faulthandler",
                "-m",
                "conformance.harness",
                "--loop",
                loop,
                "--module",
                module,
                "--out",
                str(out),
                "--skip",
                str(skip),
                "--hang-after",
                str(hang_after),
            ]
            if only_file is not None:
                command += ["--only", str(only_file)]
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
            finished = run_bounded(command, cwd=scratch, env=env, limit=_MODULE_LIMIT)
            stderr, code = finished.stderr, finished.returncode
            if finished.timed_out:
                stderr, code = "the module run exceeded its time limit", -1
            results, started, done = _read(out)
            if done:
                break
            if started is None:
                # Before the first test (an import error, a class fixture) or
                # after the last one (a module fixture that hung).
                where = "after its last test" if results else "before its first test"
                kind = "hang" if "Timeout (" in stderr else "crash"
                lost[f"{module} ({kind} {where})"] = TestResult(
                    kind, False, 0.0, f"exit status {code}\n{stderr[-_TAIL:]}"
                )
                break
            kind = "hang" if "Timeout (" in stderr else "crash"
            lost[started] = TestResult(
                kind,
                False,
                hang_after if kind == "hang" else 0.0,
                f"exit status {code}\n{stderr[-_TAIL:]}",
            )
        run.results = {**results, **lost}
    run.seconds = time.perf_counter() - began
    return run


_TAIL = 4000


@dataclass
class Difference:
    test: str
    python: str
    loop: str
    outcome: str
    detail: str
    reason: str | None  # why it is expected, when it is a known difference


def compare(stock: ModuleRun, ours: ModuleRun) -> list[Difference]:
    found = []
    for test, mine in ours.results.items():
        # A test only ours has (a hang after the last test) passed on stock.
        base = stock.results.get(test, TestResult("pass", False, 0.0, ""))
        if base.outcome not in PASSED or mine.outcome in PASSED:
            continue
        reason = KNOWN_DIFFERENCES.get(test.rsplit(".", 1)[-1]) or KNOWN_DIFFERENCES.get(test)
        found.append(Difference(test, ours.python, ours.loop, mine.outcome, mine.detail, reason))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--python",
        nargs="+",
        default=["current"],
        help="versions (3.12), paths, or 'current' (default)",
    )
    parser.add_argument(
        "-m",
        "--modules",
        nargs="+",
        default=None,
        help="test_asyncio modules (default: all but the Windows ones)",
    )
    parser.add_argument("--ci", action="store_true", help=f"the CI set: {' '.join(CI_MODULES)}")
    parser.add_argument(
        "--loops",
        nargs="+",
        default=list(LOOPS[1:]),
        help="loops to compare with stock: virtual, exploring, or "
        "module:Class (default: virtual exploring)",
    )
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--hang-after",
        type=float,
        default=60.0,
        help="real seconds after which a test counts as hung (default 60)",
    )
    parser.add_argument(
        "--confirm",
        type=int,
        default=2,
        help="re-runs, alone, of each differing test on both loops (default 2)",
    )
    parser.add_argument("--report", type=Path, help="write the results table (Markdown) here")
    parser.add_argument("--json", type=Path, help="write every result (JSON) here")
    args = parser.parse_args(argv)

    for loop in args.loops:
        if loop not in LOOPS[1:] and ":" not in loop:
            parser.error(f"--loops: {loop!r} is not virtual, exploring or module:Class")
    pythons = [find_python(version) for version in args.python]
    plan: list[tuple[str, str, str]] = []
    versions = {python: version_of(python) for python in pythons}
    for python in pythons:
        modules = args.modules or (list(CI_MODULES) if args.ci else test_modules(python))
        for module in modules:
            for loop in ("stock", *args.loops):
                plan.append((python, module, loop))
    print(
        f"conformance: {len(plan)} module runs on {', '.join(versions.values())}, "
        f"{args.jobs} at a time",
        flush=True,
    )
    runs: dict[tuple[str, str, str], ModuleRun] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_module, *key, hang_after=args.hang_after): key for key in plan}
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs[futures[future]] = run
            bad = sum(r.outcome not in PASSED for r in run.results.values())
            print(
                f"  {versions[run.python]} {run.module:24} {run.loop:9} "
                f"{len(run.results):4} tests, {bad:3} not passed, {run.seconds:6.1f} s",
                flush=True,
            )

    differences: list[Difference] = []
    for (python, module, loop), run in sorted(runs.items()):
        if loop == "stock":
            continue
        found = compare(runs[(python, module, "stock")], run)
        if found and args.confirm:
            found = _confirm(found, python, module, loop, args)
        differences.extend(found)

    table = results_table(runs, differences, versions, args.loops)
    print(table)
    if args.report:
        args.report.write_text(table + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    f"{versions[p]} {m} {loop}": {t: vars(r) for t, r in run.results.items()}
                    for (p, m, loop), run in runs.items()
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    unexplained = [d for d in differences if d.reason is None]
    for difference in differences:
        print(
            f"\n{'DIFFERS' if difference.reason is None else 'known'}: "
            f"{versions[difference.python]} {difference.loop} {difference.test}: "
            f"{difference.outcome}" + (f" ({difference.reason})" if difference.reason else "")
        )
        if difference.reason is None:
            print("    " + difference.detail.strip().replace("\n", "\n    ")[-1500:])
    print(
        f"\nconformance: {len(unexplained)} test(s) pass on the stock loop but not on ours"
        f" ({len(differences) - len(unexplained)} known, each with its reason)"
    )
    return 1 if unexplained else 0


def _confirm(
    found: list[Difference], python: str, module: str, loop: str, args: argparse.Namespace
) -> list[Difference]:
    """Keep a difference only if stock passes alone and ours fails alone at least once.

    A test that fails on ours once in a few runs is still a difference (a
    false timeout is often intermittent); one that fails alone on the stock
    loop too is the machine's noise, not ours.
    """
    ids = [d.test for d in found]
    stock_bad: set[str] = set()
    ours_bad: dict[str, TestResult] = {}
    for _ in range(args.confirm):
        stock = run_module(python, module, "stock", hang_after=args.hang_after, only=ids)
        stock_bad |= {t for t, r in stock.results.items() if r.outcome not in PASSED}
        ours = run_module(python, module, loop, hang_after=args.hang_after, only=ids)
        for test, result in ours.results.items():
            if result.outcome not in PASSED:
                ours_bad.setdefault(test, result)
    kept = []
    for difference in found:
        if difference.test in stock_bad:
            continue
        kept.append(difference)
    return kept


def results_table(
    runs: dict[tuple[str, str, str], ModuleRun],
    differences: list[Difference],
    versions: dict[str, str],
    loops: list[str],
) -> str:
    lines = [
        "| Python | module | tests | "
        + " | ".join(f"{loop}: ran on it / passed / differs" for loop in loops)
        + " | stock passed |",
        "|---|---|---:|" + "---:|" * (len(loops) + 1),
    ]
    differing: dict[tuple[str, str, str], int] = {}
    for d in differences:
        module = d.test.split(".")[2] if d.test.startswith("test.") else "?"
        key = (d.python, module, d.loop)
        differing[key] = differing.get(key, 0) + 1
    keys = sorted({(p, m) for p, m, _ in runs}, key=lambda k: (versions[k[0]], k[1]))
    for python, module in keys:
        stock = runs[(python, module, "stock")]
        cells = []
        for loop in loops:
            run = runs[(python, module, loop)]
            ran = sum(r.ran_on_loop for r in run.results.values())
            passed = sum(r.outcome in PASSED for r in run.results.values())
            cells.append(f"{ran} / {passed} / {differing.get((python, module, loop), 0)}")
        stock_passed = sum(r.outcome in PASSED for r in stock.results.values())
        lines.append(
            f"| {versions[python]} | {module} | {len(stock.results)} | "
            + " | ".join(cells)
            + f" | {stock_passed} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
