"""Trace Event Format export: structure, content, file writing, file names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tracing_helpers import run_traced_main

from pytest_asyncspec.clock.virtual_loop import VirtualClockLoop
from pytest_asyncspec.tracing.trace import Tracer
from pytest_asyncspec.tracing.trace_events import (
    TRACE_FILE_SUFFIX,
    to_trace_events,
    trace_file_name,
    write_trace_events,
)


async def block_then_await() -> None:
    async def work() -> None:
        time.sleep(2.5)
        await asyncio.sleep(2.5)

    await asyncio.gather(*(asyncio.create_task(work(), name=f"worker-{i}") for i in range(5)))


# -- a validator for the Trace Event Format (the subset we emit) -------------------

_NUMBER = (int, float)


def _check_number(event: dict[str, Any], key: str) -> None:
    value = event.get(key)
    assert isinstance(value, _NUMBER), (key, event)
    assert not isinstance(value, bool), (key, event)
    assert value >= 0, (key, event)


def validate_trace_events(document: Any) -> None:
    """Fail unless ``document`` is a well-formed Trace Event Format object."""
    assert isinstance(document, dict)
    assert set(document) >= {"traceEvents", "displayTimeUnit", "otherData"}
    assert document["displayTimeUnit"] in ("ms", "ns")
    assert isinstance(document["otherData"], dict)
    events = document["traceEvents"]
    assert isinstance(events, list)
    thread_names: dict[tuple[int, int], str] = {}
    timed_tracks: set[tuple[int, int]] = set()
    for event in events:
        assert isinstance(event, dict), event
        assert isinstance(event.get("ph"), str), event
        assert isinstance(event.get("name"), str), event
        for key in ("pid", "tid"):
            assert isinstance(event.get(key), int), event
            assert not isinstance(event[key], bool), event
        if "args" in event:
            assert isinstance(event["args"], dict), event
        phase = event["ph"]
        if phase == "M":
            assert event["name"] in ("process_name", "thread_name", "thread_sort_index"), event
            if event["name"] == "thread_sort_index":
                assert isinstance(event["args"]["sort_index"], int), event
            else:
                assert isinstance(event["args"]["name"], str), event
            if event["name"] == "thread_name":
                track = (event["pid"], event["tid"])
                assert track not in thread_names, f"two names for one track: {event}"
                thread_names[track] = event["args"]["name"]
        elif phase == "X":
            _check_number(event, "ts")
            _check_number(event, "dur")
            assert isinstance(event.get("cat"), str), event
            timed_tracks.add((event["pid"], event["tid"]))
        elif phase == "i":
            _check_number(event, "ts")
            assert event.get("s") in ("g", "p", "t"), event
            timed_tracks.add((event["pid"], event["tid"]))
        else:
            raise AssertionError(f"unexpected phase {phase!r}: {event}")
    missing = timed_tracks - set(thread_names)
    assert not missing, f"tracks without a thread_name event: {sorted(missing)}"


def complete_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [event for event in document["traceEvents"] if event["ph"] == "X"]


def without_real_times(document: dict[str, Any]) -> dict[str, Any]:
    """The document minus real step durations, which vary run to run."""
    copy: dict[str, Any] = json.loads(json.dumps(document))
    for event in complete_events(copy):
        del event["args"]["real_us"]
    return copy


# -- the document ----------------------------------------------------------------


def test_block_then_await_exports_loop_time_steps() -> None:
    document = to_trace_events(run_traced_main(block_then_await), test_id="tests/t.py::test_x")
    validate_trace_events(json.loads(json.dumps(document)))

    names = {
        event["tid"]: event["args"]["name"]
        for event in document["traceEvents"]
        if event["ph"] == "M" and event["name"] == "thread_name"
    }
    assert names == {1: "main", 2: "worker-0", 3: "worker-1", 4: "worker-2", 5: "worker-3"} | {
        6: "worker-4"
    }
    process = [event for event in document["traceEvents"] if event["name"] == "process_name"]
    assert [event["args"]["name"] for event in process] == ["tests/t.py::test_x"]
    assert document["otherData"]["test_id"] == "tests/t.py::test_x"
    assert "loop time" in document["otherData"]["time_base"]

    # Virtual seconds in microseconds: each worker's blocking step is 2.5 s,
    # one after the other, although no real time passed.
    blocking = [event for event in complete_events(document) if event["dur"] > 0]
    assert [(event["tid"], event["ts"], event["dur"]) for event in blocking] == [
        (2, 0, 2_500_000),
        (3, 2_500_000, 2_500_000),
        (4, 5_000_000, 2_500_000),
        (5, 7_500_000, 2_500_000),
        (6, 10_000_000, 2_500_000),
    ]
    for event in blocking:
        assert event["name"] == "block_then_await.<locals>.work"  # the coroutine's qualname
        assert event["cat"] == "step"
        assert event["args"]["awaits"] == "sleep"
        assert event["args"]["task"] == event["tid"]
        assert event["args"]["real_us"] < 1_000_000  # the sleep was virtual
    instant_steps = [event for event in complete_events(document) if event["dur"] == 0]
    assert len(instant_steps) == 7  # main's two steps, each worker's last one
    assert {event["args"]["awaits"] for event in instant_steps} == {"future", "done"}


def test_every_step_becomes_one_complete_event() -> None:
    trace = run_traced_main(block_then_await)
    events = complete_events(to_trace_events(trace))
    assert len(events) == len(trace)
    assert sorted(event["args"]["index"] for event in events) == list(range(len(trace)))


def test_created_and_ended_instants() -> None:
    async def main() -> None:
        async def fails() -> None:
            await asyncio.sleep(1)
            raise ValueError("boom")

        task = asyncio.create_task(fails(), name="fails")
        await asyncio.sleep(0.5)
        with contextlib.suppress(ValueError):
            await task

    document = to_trace_events(run_traced_main(main))
    validate_trace_events(document)
    instants = [event for event in document["traceEvents"] if event["ph"] == "i"]
    created = {event["tid"]: event for event in instants if event["name"] == "created"}
    ended = {event["tid"]: event for event in instants if event["name"] == "ended"}
    assert created[2]["args"]["parent"] == 1
    assert created[2]["args"]["coroutine"].endswith("main.<locals>.fails")
    assert created[2]["args"]["where"].startswith(__file__)
    assert ended[2]["ts"] == 1_000_000
    assert ended[2]["args"] == {"outcome": "raised", "error": "ValueError: boom"}
    assert ended[1]["args"] == {"outcome": "returned", "error": None}


def test_awaited_task_is_recorded() -> None:
    async def main() -> None:
        async def child() -> None:
            await asyncio.sleep(1)

        await asyncio.create_task(child(), name="child")

    events = complete_events(to_trace_events(run_traced_main(main)))
    main_steps = [event for event in events if event["tid"] == 1]
    assert main_steps[0]["args"]["awaits"] == "task"
    assert main_steps[0]["args"]["awaited_task"] == 2


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks arrived in Python 3.12")
def test_eager_step_records_the_step_it_ran_inside() -> None:
    async def main() -> None:
        async def child() -> None:
            time.sleep(1)
            await asyncio.sleep(1)

        time.sleep(0.5)
        task = asyncio.create_task(child(), name="child")
        await task

    document = to_trace_events(run_traced_main(main, eager=True))
    validate_trace_events(document)
    first_child_step = next(event for event in complete_events(document) if event["tid"] == 2)
    assert first_child_step["args"]["inside"] == 1
    assert (first_child_step["ts"], first_child_step["dur"]) == (500_000, 1_000_000)


def test_events_are_ordered_and_deterministic() -> None:
    first = to_trace_events(run_traced_main(block_then_await))
    second = to_trace_events(run_traced_main(block_then_await))
    assert without_real_times(first) == without_real_times(second)
    timestamps = [event["ts"] for event in first["traceEvents"] if event["ph"] != "M"]
    assert timestamps == sorted(timestamps)


def test_default_process_name_and_empty_trace() -> None:
    loop = VirtualClockLoop()
    tracer = Tracer(loop)
    tracer.install()
    trace = tracer.stop()
    loop.close()
    document = to_trace_events(trace)
    validate_trace_events(document)
    assert document["traceEvents"] == [
        {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "asyncspec trace"}}
    ]
    assert document["otherData"]["test_id"] is None
    assert document["otherData"]["steps"] == 0


def test_real_loop_trace_is_valid() -> None:
    async def main() -> None:
        await asyncio.gather(asyncio.create_task(asyncio.sleep(0.01), name="nap"))

    loop = asyncio.new_event_loop()
    tracer = Tracer(loop)
    tracer.install()
    try:
        loop.run_until_complete(loop.create_task(main(), name="main"))
    finally:
        trace = tracer.stop()
        loop.close()
    document = json.loads(json.dumps(to_trace_events(trace)))
    validate_trace_events(document)
    assert len(complete_events(document)) == len(trace)


HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "line one\nline two\r\n",
    'quote " and backslash \\ and tab \t',
    "nul \x00 and escape \x1b[2J",
    "caf\u00e9 \u6771\u4eac \U0001f600",
    "\u202eright-to-left override",
]


def test_hostile_task_names_survive_as_data(tmp_path: Path) -> None:
    async def main() -> None:
        await asyncio.gather(
            *(asyncio.create_task(asyncio.sleep(0), name=name) for name in HOSTILE_NAMES)
        )

    trace = run_traced_main(main)
    path = write_trace_events(trace, tmp_path / "hostile.trace.json", test_id="t[<b>\n]")
    raw = path.read_bytes()
    raw.decode("ascii")  # ensure_ascii: plain ASCII whatever the names
    assert b"<script>" in raw  # JSON needs no HTML escaping; it stays a string
    assert b"\n" not in raw
    document = json.loads(raw)
    validate_trace_events(document)
    names = [
        event["args"]["name"]
        for event in document["traceEvents"]
        if event["ph"] == "M" and event["name"] == "thread_name"
    ]
    assert names == ["main", *HOSTILE_NAMES]
    assert document["otherData"]["test_id"] == "t[<b>\n]"


def test_lone_surrogates_are_escaped_not_emitted() -> None:
    async def main() -> None:
        await asyncio.create_task(asyncio.sleep(0), name="bad \udc80 byte")

    document = to_trace_events(run_traced_main(main))
    text = json.dumps(document, ensure_ascii=False)
    text.encode("utf-8")  # would raise on a lone surrogate
    names = [
        event["args"]["name"]
        for event in document["traceEvents"]
        if event["ph"] == "M" and event["name"] == "thread_name"
    ]
    assert "bad \\udc80 byte" in names


# -- writing files -------------------------------------------------------------------


def test_write_creates_parents_and_returns_the_path(tmp_path: Path) -> None:
    trace = run_traced_main(block_then_await)
    target = tmp_path / "deep" / "er" / "x.trace.json"
    written = write_trace_events(trace, str(target), test_id="t")
    assert written == target
    document = json.loads(target.read_text(encoding="utf-8"))
    validate_trace_events(document)
    assert without_real_times(document) == without_real_times(to_trace_events(trace, test_id="t"))
    assert sorted(path.name for path in target.parent.iterdir()) == ["x.trace.json"]


def test_write_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "x.trace.json"
    target.write_text("old", encoding="utf-8")
    write_trace_events(run_traced_main(block_then_await), target)
    validate_trace_events(json.loads(target.read_text(encoding="utf-8")))
    assert [path.name for path in tmp_path.iterdir()] == ["x.trace.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.trace.json"
    target.write_text("old", encoding="utf-8")

    def broken_encode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(json.JSONEncoder, "encode", broken_encode)
    with pytest.raises(OSError, match="disk full"):
        write_trace_events(run_traced_main(block_then_await), target)
    assert target.read_text(encoding="utf-8") == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["x.trace.json"]


# -- the step cap -------------------------------------------------------------------


async def early_then_late() -> None:
    """'early' runs 3 steps and ends; 'late' starts after it and runs 40;
    'last' runs after both."""

    async def early() -> None:
        for _ in range(2):
            await asyncio.sleep(0)

    async def late() -> None:
        for _ in range(39):
            await asyncio.sleep(1)

    await asyncio.create_task(early(), name="early")
    await asyncio.create_task(late(), name="late")
    await asyncio.create_task(early(), name="last")


def test_a_trace_over_the_cap_keeps_the_first_steps_and_says_so() -> None:
    trace = run_traced_main(early_then_late)
    recorded = len(trace)
    assert recorded > 40
    document = to_trace_events(trace, test_id="t", max_steps=10)
    validate_trace_events(json.loads(json.dumps(document)))
    events = complete_events(document)
    assert sorted(event["args"]["index"] for event in events) == list(range(10))
    other = document["otherData"]
    assert (other["steps"], other["steps_recorded"]) == (10, recorded)
    assert other["clipped"] == (
        f"this file keeps the first 10 of the {recorded} steps recorded (at most 10 steps "
        "a file: --asyncspec-trace-max-steps), and the tasks that ran in them"
    )
    # The tasks kept are those that ran in the kept steps; 'late' ends after the cut.
    tracks = {
        event["args"]["name"]
        for event in document["traceEvents"]
        if event["ph"] == "M" and event["name"] == "thread_name"
    }
    assert tracks == {"main", "early", "late"}
    assert other["tasks"] == 3
    ended = [event["tid"] for event in document["traceEvents"] if event["name"] == "ended"]
    assert trace.task("late").label not in ended
    assert trace.task("early").label in ended


def test_a_trace_under_the_cap_is_whole() -> None:
    trace = run_traced_main(early_then_late)
    document = to_trace_events(trace, max_steps=len(trace))
    other = document["otherData"]
    assert (other["steps"], other["steps_recorded"], other["clipped"]) == (
        len(trace),
        len(trace),
        None,
    )
    assert document == to_trace_events(trace)


def test_the_written_file_is_the_document_clipped_alike(tmp_path: Path) -> None:
    trace = run_traced_main(early_then_late)
    target = write_trace_events(trace, tmp_path / "x.trace.json", test_id="t", max_steps=10)
    written = json.loads(target.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(to_trace_events(trace, test_id="t", max_steps=10)))
    assert written["otherData"]["steps"] == 10


def test_writing_a_long_trace_holds_a_few_integers_a_step_not_its_events(
    tmp_path: Path,
) -> None:
    """The events are encoded one by one as they are written: the peak memory
    of writing grows by far less than an event (two dicts, over 1 KB) a step."""
    import tracemalloc

    async def many_steps() -> None:
        for _ in range(20_000):
            await asyncio.sleep(0)

    trace = run_traced_main(many_steps)
    tracemalloc.start()
    try:
        write_trace_events(trace, tmp_path / "x.trace.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / len(trace) < 300, f"{peak / len(trace):.0f} bytes a step"


# -- file names ----------------------------------------------------------------------

NASTY_NODE_IDS = [
    "tests/test_a.py::test_one",
    "tests/test_a.py::test_one[1-2]",
    "tests/test_a.py::TestClass::test_method[param with spaces]",
    "tests_test_a.py__test_one",
    "tests\\test_a.py::test_one",
    "../../etc/passwd",
    "..",
    ".",
    "",
    "...::...",
    "-rf",
    "CON",
    "tests/test_a.py::test[\x00\x1b\n\t]",
    "tests/test_a.py::test[caf\u00e9-\u6771\u4eac-\U0001f600]",
    "tests/test_a.py::test[\udc80]",
    "tests/test_a.py::test[" + "x" * 5000 + "]",
    "tests/test_a.py::test[" + "x" * 5000 + "y]",
    "a/b",
    "a_b",
    "a:b",
    "C:\\Windows\\System32",
    "/absolute/path",
]

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@pytest.mark.parametrize("nodeid", NASTY_NODE_IDS)
def test_trace_file_name_is_safe(nodeid: str, tmp_path: Path) -> None:
    name = trace_file_name(nodeid)
    assert _SAFE.fullmatch(name), name
    assert name.endswith(TRACE_FILE_SUFFIX)
    assert ".." not in name
    assert len(name) <= 120
    assert os.path.basename(name) == name
    assert trace_file_name(nodeid) == name  # stable
    # The name is usable as is and stays inside the directory it is put in.
    path = tmp_path / name
    path.write_text("{}", encoding="utf-8")
    assert path.resolve().parent == tmp_path.resolve()


def test_trace_file_names_are_unique() -> None:
    names = [trace_file_name(nodeid) for nodeid in NASTY_NODE_IDS]
    assert len(set(names)) == len(NASTY_NODE_IDS)
    # Case-insensitive file systems must not merge two names either.
    assert len({name.lower() for name in names}) == len(NASTY_NODE_IDS)


def test_trace_file_name_keeps_the_readable_part() -> None:
    name = trace_file_name("tests/test_a.py::test_one[1-2]")
    assert re.fullmatch(r"tests_test_a\.py__test_one_1-2-[0-9a-f]{10}\.trace\.json", name), name


def test_trace_file_name_is_the_same_on_every_run() -> None:
    # A hash of the node id, not Python's salted hash(): pinned here.
    assert trace_file_name("a/b") == "a_b-c14cddc033.trace.json"
