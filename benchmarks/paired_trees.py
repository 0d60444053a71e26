"""The benchmark files of two source trees, timed in paired rounds.

    python benchmarks/paired_trees.py --old TREE PYTHON --new TREE PYTHON \
        [--rounds 5] [--fewer-rounds test_bench_suite_memory.py=2] [--out DIR] [FILE ...]
    python benchmarks/paired_trees.py --report DIR/rounds.json

Each tree is a checkout with its own interpreter (a virtual environment with
that tree installed, editable); each FILE is a path relative to both trees
(or a node id in one, FILE::test), by default every
``benchmarks/test_bench_*.py`` of either.  Each round runs every file once
per tree, as ``nox -s bench`` runs them (the tree's own ``pytest`` from its
root, so that its pyproject configuration applies; no xdist)::

    pytest FILE -p no:cacheprovider -q --benchmark-json=OUT

with ``PYTHONPATH`` and ``PYTHONDONTWRITEBYTECODE`` cleared, in an order
shuffled per round, so that the load of this shared machine falls on both
trees alike.  Every benchmark (by file and test name) of a round gives one
ratio, the new tree's ``stats.median`` over the old's; the figure is the
median of those ratios, with their minimum and maximum.  A benchmark present
in one tree only is listed apart.  ``--fewer-rounds`` runs a slow file in
the first N rounds only.

Each run's pytest output and benchmark JSON are kept under ``--out`` (the
output holds the figures some files print themselves, such as their own
paired on/off ratios), and ``rounds.json`` there holds every median taken,
rewritten after each round; ``--report ROUNDS_JSON`` prints the table of
such a file again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal, NamedTuple

Side = Literal["old", "new"]
SIDES: tuple[Side, Side] = ("old", "new")


class Tree(NamedTuple):
    root: Path
    #: The interpreter of the environment the tree is installed in; its
    #: ``pytest`` script beside it runs the files.
    python: Path


class Run(NamedTuple):
    returncode: int
    seconds: float
    #: Test name to its ``stats.median`` in seconds.
    medians: dict[str, float]


_DROPPED_ENV = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")


def _run_file(tree: Tree, file: str, out: Path) -> Run:
    json_path = out.with_suffix(".json")
    json_path.unlink(missing_ok=True)
    # Without PYTHONPATH, each tree imports only what its environment holds;
    # bytecode is written and reused, as in an installed environment.
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    command = [
        str(tree.python.with_name("pytest")),
        file,
        "-p",
        "no:cacheprovider",
        "-q",
        f"--benchmark-json={json_path}",
    ]
    started = time.perf_counter()
    with out.with_suffix(".out").open("w") as log:
        done = subprocess.run(
            command, cwd=tree.root, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    seconds = time.perf_counter() - started
    medians: dict[str, float] = {}
    if json_path.exists():
        for bench in json.loads(json_path.read_text())["benchmarks"]:
            medians[bench["name"]] = bench["stats"]["median"]
    return Run(done.returncode, seconds, medians)


def _path(file: str) -> Path:
    """The file of a FILE argument, which may be a node id (FILE::test)."""
    return Path(file.partition("::")[0])


def _default_files(trees: dict[Side, Tree]) -> list[str]:
    found = {
        path.relative_to(tree.root).as_posix()
        for tree in trees.values()
        for path in (tree.root / "benchmarks").glob("test_bench_*.py")
    }
    return sorted(found)


def _fewer_rounds(specs: list[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for spec in specs:
        name, _, count = spec.rpartition("=")
        if not name or not count.isdigit():
            raise SystemExit(f"--fewer-rounds wants FILE=N, not {spec!r}")
        limits[Path(name).name] = int(count)
    return limits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", nargs=2, metavar=("TREE", "PYTHON"))
    parser.add_argument("--new", nargs=2, metavar=("TREE", "PYTHON"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fewer-rounds", action="append", default=[], metavar="FILE=N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", type=Path, metavar="ROUNDS_JSON")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    if args.report is not None:
        _report(json.loads(args.report.read_text()), [], args.report.parent)
        return 0
    if args.old is None or args.new is None:
        parser.error("--old and --new are required, unless --report")
    trees: dict[Side, Tree] = {
        side: Tree(Path(getattr(args, side)[0]).absolute(), Path(getattr(args, side)[1]).absolute())
        for side in SIDES
    }
    files: list[str] = args.files or _default_files(trees)
    for file in files:
        for side, tree in trees.items():
            if not (tree.root / _path(file)).is_file():
                raise SystemExit(f"{file} is not in the {side} tree {tree.root}")
    limits = _fewer_rounds(args.fewer_rounds)
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="paired-trees-"))
    out.mkdir(parents=True, exist_ok=True)
    # taken[file][side][round] = {test name: median}
    taken: dict[str, dict[Side, list[dict[str, float]]]] = {
        file: {side: [] for side in SIDES} for file in files
    }
    failures: list[str] = []
    rng = random.Random(args.seed)
    for number in range(args.rounds):
        runs = [
            (file, side)
            for file in files
            if number < limits.get(_path(file).name, args.rounds)
            for side in SIDES
        ]
        rng.shuffle(runs)
        for file, side in runs:
            stem = f"r{number:02}-{_path(file).stem}-{side}"
            run = _run_file(trees[side], file, out / stem)
            taken[file][side].append(run.medians)
            note = "" if run.returncode == 0 else f" exit {run.returncode}, see {stem}.out"
            if note:
                failures.append(f"round {number} {file} {side}:{note}")
            print(
                f"round {number} {side} {file}: {run.seconds:.1f} s, "
                f"{len(run.medians)} benchmarks{note}",
                file=sys.stderr,
                flush=True,
            )
        (out / "rounds.json").write_text(json.dumps(taken, indent=1))
    _report(taken, failures, out)
    return 0


def _report(
    taken: dict[str, dict[Side, list[dict[str, float]]]], failures: list[str], out: Path
) -> None:
    rows = []
    only: list[str] = []
    for file, sides in taken.items():
        names = {side: {name for run in sides[side] for name in run} for side in SIDES}
        only.extend(f"{file}::{name} (old only)" for name in names["old"] - names["new"])
        only.extend(f"{file}::{name} (new only)" for name in names["new"] - names["old"])
        for name in sorted(names["old"] & names["new"]):
            ratios = [
                new[name] / old[name]
                for old, new in zip(sides["old"], sides["new"], strict=True)
                if name in old and name in new
            ]
            if ratios:
                rows.append((f"{_path(file).stem}::{name}", ratios))
            else:
                only.append(f"{file}::{name} (never in both trees in one round)")
    width = max((len(label) for label, _ in rows), default=9)
    print(f"\n{'benchmark':{width}}  rounds  median new/old     min     max")
    for label, ratios in rows:
        print(
            f"{label:{width}}  {len(ratios):6}  {statistics.median(ratios):14.3f}  "
            f"{min(ratios):6.3f}  {max(ratios):6.3f}"
        )
    for line in only:
        print(f"unpaired: {line}")
    for line in failures:
        print(f"failed: {line}")
    print(f"runs kept in {out}")


if __name__ == "__main__":
    sys.exit(main())
