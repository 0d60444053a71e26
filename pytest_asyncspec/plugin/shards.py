"""One explored test's schedules spread over pytest-xdist's workers.

Under ``-n W``, a test that explores ``N >= W`` schedules is collected as
``W`` shard items (``test_race[asyncspec-shard-1-of-2]``): shard ``k`` runs
the schedules numbered ``k*N//W`` to ``(k+1)*N//W - 1``.  A schedule's seed
comes from the run's seed and its number alone, so the shards together run
exactly the schedules one process would, and a failure's replay token (which
names the unsharded test) replays without xdist.  Every worker collects the
same shards (they all see the same worker count), as xdist requires.

The shards of one test share a *stop file* in a directory the controller
makes for the run: the first shard to fail writes it, and the others, which
look for it every few schedules, stop early -- where the workers share a
file system (xdist's local workers do; remote ones keep exploring).  The
run summary merges the shards' reports into the line a serial run prints
(:func:`merge`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from .explored_tests import ExploreRequest
from .state import TestPlan, keep_plan, state_of

#: The controller's directory for stop files, handed to each worker.
STOP_DIR_KEY = "asyncspec_shard_stop_dir"


def worker_count(config: pytest.Config) -> int:
    """How many xdist workers run this session's tests (1 without xdist)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return 1
    return int(workerinput.get("workercount", 1))


def stop_dir_for_workers() -> str:
    """A fresh directory for the run's stop files (made by the controller)."""
    return tempfile.mkdtemp(prefix="asyncspec-shards-")


def shard_tag(index: int, count: int) -> str:
    """The parameter id that tells a shard from its siblings."""
    return f"asyncspec-shard-{index + 1}-of-{count}"


def shard_name(name: str, tag: str) -> str:
    """The shard's item name: its test's name, its shard tag added."""
    if name.endswith("]"):
        return f"{name[:-1]}-{tag}]"
    return f"{name}[{tag}]"


def split_explored(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Replace each explored test of ``items`` by its shards, spread over the
    list so that xdist's first batches give them to different workers."""
    workers = worker_count(config)
    if workers < 2:
        return
    shards: list[list[pytest.Item]] = []
    kept: list[pytest.Item] = []
    for item in items:
        made = _shards_of(item, workers)
        if made:
            kept.append(made[0])
            shards.append(made[1:])
        else:
            kept.append(item)
    # The other shards of each test spread evenly over the list: xdist hands
    # each worker a first batch of consecutive items, and shards side by
    # side would land in one worker's batch.
    for rest in shards:
        for place, shard in enumerate(rest, start=1):
            kept.insert(place * len(kept) // workers, shard)
    items[:] = kept


def _shards_of(item: pytest.Item, workers: int) -> list[pytest.Item]:
    state = state_of(item)
    request = None if state is None else state.plan.explore
    if (
        state is None
        or request is None
        or request.plan is None
        or request.replay is not None
        or not isinstance(item, pytest.Function)
        # A claim's figures are the test's: its report keeps one row per test.
        or state.plan.claim is not None
        # Not explored after all (anyio's trio backend): it runs once.
        or state.outside_modes is not None
    ):
        return []
    if request.schedules < workers:
        # Too few schedules to give every worker one: the test runs whole,
        # and its summary line says why it was not split.
        _keep(item, state.plan, replace(request, unsplit=workers), state.on_anyio_runner)
        return []
    made: list[pytest.Item] = []
    for index in range(workers):
        tag = shard_tag(index, workers)
        shard = _copy(item, shard_name(item.name, tag), tag)
        sharded = replace(request, shard=(index, workers), base=(item.nodeid, item.name))
        _keep(shard, state.plan, sharded, state.on_anyio_runner)
        made.append(shard)
    return made


def _keep(item: pytest.Item, plan: TestPlan, request: ExploreRequest, on_anyio: bool) -> None:
    new = TestPlan(plan.settings, request, plan.claim, plan.marked_leak_rules, plan.outside_modes)
    keep_plan(item, new).on_anyio_runner = on_anyio


def _copy(item: pytest.Function, name: str, tag: str) -> pytest.Function:
    """A copy of ``item`` under ``name``: the same function, parameters,
    fixtures, markers and item class (pytest-asyncio's, for its tests).

    Its node id must differ from the test's: pytest 9.2 builds a function's
    node id from its original name and its parameter ids, so a parametrized
    test's shard carries ``tag`` as one more id, and a plain test's shard is
    named as a whole (older pytest builds it from ``name``).
    """
    callspec = getattr(item, "callspec", None)
    originalname: str | None = None
    if callspec is not None:
        callspec = dataclasses.replace(callspec, _idlist=[*callspec._idlist, tag])
        originalname = item.originalname
    copy: pytest.Function = type(item).from_parent(
        item.parent,
        name=name,
        callspec=callspec,
        callobj=item.obj,
        fixtureinfo=item._fixtureinfo,
        keywords=item.keywords,
        originalname=originalname,
    )
    copy.own_markers = list(item.own_markers)
    # What the test's collection added to its fixtures (anyio's runner
    # first, see .anyio_tests) holds for its copies.
    copy.fixturenames[:] = item.fixturenames
    return copy


def numbers(request: ExploreRequest) -> range | None:
    """The schedule numbers a shard runs (None: the test is not sharded)."""
    if request.shard is None:
        return None
    index, count = request.shard
    total = request.schedules
    return range(index * total // count, (index + 1) * total // count)


def stop_file(config: pytest.Config, base_nodeid: str) -> Path | None:
    """Where the shards of ``base_nodeid`` learn that one of them failed."""
    directory = getattr(config, "workerinput", {}).get(STOP_DIR_KEY)
    if not directory:
        return None
    digest = hashlib.blake2b(base_nodeid.encode(), digest_size=12).hexdigest()
    return Path(directory) / digest


def stop_check(path: Path | None) -> Callable[[], bool] | None:
    """Whether another shard failed (None: no stop file to look for)."""
    if path is None:
        return None
    return path.exists


def announce_failure(path: Path | None) -> None:
    """This shard failed: the others may stop."""
    if path is not None:
        path.touch()


def merge(nodeid: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One explored test's summary from its shards' summaries: the
    schedules run, the distinct orders among all of them, and PCT's bound
    (every shard ran the same stock order), as one run would report them."""
    first = parts[0]
    count = first["shard"][1]
    orders: set[str] = set()
    for part in parts:
        orders.update(part.get("orders") or ())
    merged = {
        key: value
        for key, value in first.items()
        if key not in {"orders", "shard", "stopped", "base"}
    }
    merged.update(
        schedules=sum(part["schedules"] for part in parts),
        distinct=len(orders),
        failed=any(part.get("failed") for part in parts),
        real_work=sum(part.get("real_work", 0) for part in parts),
        shards=[len(parts), count],
        stopped=sum(bool(part.get("stopped")) for part in parts),
        failing_shards=[part["shard"][0] + 1 for part in parts if part.get("failed")],
    )
    # A shard that stopped before it ran anything never saw the stock order.
    ran = [part for part in parts if part.get("length")]
    for key in ("length", "labels", "bounds"):
        merged[key] = ran[0][key] if ran else (0 if key != "bounds" else [])
    return merged


def shard_sources(summary: dict[str, Any]) -> Iterator[str]:
    """What a merged summary adds to its line: how the shards went."""
    reported, count = summary["shards"]
    text = f"over {count} xdist workers"
    if reported != count:
        text += f" ({reported} of {count} shards reported)"
    failing = summary.get("failing_shards") or []
    if failing:
        which = ", ".join(str(k) for k in failing)
        text += f"; failed in shard {which}"
    stopped = summary.get("stopped", 0)
    if stopped:
        text += f"; {stopped} shard(s) stopped early once a failure was known"
    yield text
