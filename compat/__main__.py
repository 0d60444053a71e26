"""Run real asyncio libraries' test suites without the plugin and in each mode.

    python -m compat -j 2
    python -m compat --libs aiolimiter janus --modes none virtual explore
    python -m compat --report compat-results.md --json compat-results.json

Exit status: 0 when every test's outcome in every mode is its outcome
without the plugin, or the difference is listed with its cause in
compat/known_differences.py, and every listed difference still occurs; 1
otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import comparison, report
from .comparison import Difference
from .environment import DEFAULT_CACHE, prepare
from .libraries import LIBRARIES, by_name
from .modes import BASELINE, MODES
from .outcomes import Outcome
from .running import Limits, SuiteRun, run_suite

ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m compat", description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="suite runs at a time")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(MODES),
        help=f"of {', '.join(MODES)} (default: all; {BASELINE} is always run)",
    )
    parser.add_argument(
        "--libs",
        nargs="+",
        default=None,
        help=f"of {', '.join(lib.name for lib in LIBRARIES)} (default: all)",
    )
    parser.add_argument("--report", type=Path, help="write the results (Markdown) here")
    parser.add_argument("--json", type=Path, help="write every test's outcome (JSON) here")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="sdists and venv")
    parser.add_argument(
        "--hang-after", type=float, default=120.0, help="real seconds one test may take"
    )
    parser.add_argument(
        "--run-limit", type=float, default=1200.0, help="real seconds one suite run may take"
    )
    args = parser.parse_args(argv)
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; expected of {', '.join(MODES)}")
    args.modes = [mode for mode in MODES if mode in args.modes or mode == BASELINE]
    try:
        args.libraries = by_name(args.libs)
    except KeyError as error:
        parser.error(f"--libs: unknown library {error}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    began = time.perf_counter()
    env = prepare(list(LIBRARIES), ROOT, args.cache)
    print(f"compat: environment ready in {time.perf_counter() - began:.1f} s", flush=True)
    limits = Limits(args.hang_after, args.run_limit, restarts=5)
    plan = [(library, mode) for library in args.libraries for mode in args.modes]
    runs: dict[tuple[str, str], SuiteRun] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            pool.submit(run_suite, env, library, mode, limits): (library.name, mode)
            for library, mode in plan
        }
        for future in concurrent.futures.as_completed(futures):
            run = future.result()
            runs[futures[future]] = run
            print(
                f"  {run.library:14} {run.mode:9} {len(run.results):4} tests "
                f"{run.seconds:7.1f} s {run.problem.splitlines()[0] if run.problem else ''}",
                flush=True,
            )

        differences: list[Difference] = []
        for library, mode in plan:
            if mode != BASELINE:
                differences += comparison.compare(
                    library.name,
                    mode,
                    runs[(library.name, BASELINE)].results,
                    runs[(library.name, mode)].results,
                )
        # Each differing test once more, alone, in the baseline and in its mode.
        again = {}
        for library, mode in plan:
            tests = [d.test for d in differences if d.library == library.name and d.mode == mode]
            if tests:
                for which in (BASELINE, mode):
                    key = (library.name, mode, which)
                    again[key] = pool.submit(run_suite, env, library, which, limits, tests)
        for difference in differences:
            base = again[(difference.library, difference.mode, BASELINE)].result()
            mine = again[(difference.library, difference.mode, difference.mode)].result()
            comparison.confirm(
                difference,
                base.results.get(difference.test, Outcome("missing")),
                mine.results.get(difference.test, Outcome("missing")),
            )

    text = _summary(args, runs, differences)
    print(text)
    if args.report:
        args.report.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(report.as_json(runs, differences), encoding="utf-8")
    unexplained = [d for d in differences if d.known is None and not d.flaky]
    gone = comparison.stale(differences, [lib.name for lib in args.libraries], args.modes)
    for key in gone:
        print(f"STALE: {key} is listed in compat/known_differences.py but did not occur")
    print(
        f"compat: {len(unexplained)} unexplained difference(s), {len(gone)} stale known "
        f"difference(s), {sum(d.flaky for d in differences)} flaky; "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    return 1 if unexplained or gone else 0


def _summary(
    args: argparse.Namespace, runs: dict[tuple[str, str], SuiteRun], differences: list[Difference]
) -> str:
    lines = [
        "Each cell: passed/failed/other (other: skipped, xfailed, hang, crash, missing), "
        f"differences from `{BASELINE}` confirmed by a second run (flaky ones apart), "
        "and the suite's wall time.",
        "",
        report.table(args.libraries, args.modes, runs, differences),
        "",
    ]
    for run in runs.values():
        if run.problem:
            lines.append(f"(!) {run.library} {run.mode}: {run.problem}")
    for d in differences:
        status = "flaky" if d.flaky else ("known" if d.known else "DIFFERS")
        lines.append(
            f"- {status}: {d.library} / {d.mode} / `{d.test}`: {d.baseline} -> {d.outcome}"
            + (f" ({d.known.kind}: {d.known.cause})" if d.known else "")
        )
        if d.known is None:
            lines.append("    " + d.detail.strip().replace("\n", "\n    ")[-1200:])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
