"""The results: a Markdown table (library x mode) and every per-test outcome as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict

from .comparison import Difference
from .libraries import Library
from .outcomes import ERROR, FAILED, PASSED
from .running import SuiteRun


def _cell(run: SuiteRun, differences: list[Difference]) -> str:
    outcomes = [result.outcome for result in run.results.values()]
    passed = outcomes.count(PASSED)
    failed = outcomes.count(FAILED) + outcomes.count(ERROR)
    other = len(outcomes) - passed - failed
    confirmed = sum(not d.flaky for d in differences)
    flaky = len(differences) - confirmed
    cell = f"{passed}/{failed}/{other}, {confirmed} diff"
    if flaky:
        cell += f" (+{flaky} flaky)"
    cell += f", {run.seconds:.1f} s"
    if run.problem:
        cell += " (!)"
    return cell


def table(
    libraries: list[Library],
    modes: list[str],
    runs: dict[tuple[str, str], SuiteRun],
    differences: list[Difference],
) -> str:
    """One row per library, one cell per mode: passed/failed/other, the
    differences from the baseline, and the suite's wall time."""
    lines = [
        "| library | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for library in libraries:
        cells = []
        for mode in modes:
            run = runs.get((library.name, mode))
            if run is None:
                cells.append("not run")
                continue
            mine = [d for d in differences if d.library == library.name and d.mode == mode]
            cells.append(_cell(run, mine))
        lines.append(f"| {library.name} {library.version} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_json(runs: dict[tuple[str, str], SuiteRun], differences: list[Difference]) -> str:
    return json.dumps(
        {
            "runs": [
                {
                    "library": run.library,
                    "mode": run.mode,
                    "seconds": round(run.seconds, 2),
                    "problem": run.problem,
                    "results": {test: asdict(result) for test, result in run.results.items()},
                }
                for run in runs.values()
            ],
            "differences": [
                {
                    **{k: v for k, v in asdict(d).items() if k != "known"},
                    "kind": d.kind,
                    "known": asdict(d.known) if d.known else None,
                }
                for d in differences
            ],
        },
        indent=1,
    )
