"""Export a :class:`~pytest_asyncspec.tracing.trace.Trace` as Trace Event Format JSON.

The Trace Event Format is the JSON that ``chrome://tracing`` and Perfetto
(https://ui.perfetto.dev) open directly.  The export puts one process (the
test) and one thread track per task; each task step becomes a complete event
(``"ph": "X"``) spanning the loop time it held the loop, and instant events
mark where each task was created and how it ended.

Times are **loop time** in microseconds, not wall-clock time: under the
virtual clock a step that ran ``time.sleep(2.5)`` is 2.5 s long in the viewer
even though it took no real time, and two runs of the same test give the
same file.  A step's real duration (CPU time actually spent) is kept in its
``args`` as ``real_us``.  Most steps take no loop time on the virtual clock;
they are exported with ``"dur": 0``, which viewers show as a thin mark.

Nothing here imports pytest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..clock.ticks import TICKS_PER_SECOND
from .trace import Awaits, Step, TaskRecord, Trace

__all__ = [
    "MAX_STEPS",
    "TRACE_FILE_SUFFIX",
    "to_trace_events",
    "trace_file_name",
    "write_trace_events",
]

#: Every name :func:`trace_file_name` returns ends with this.
TRACE_FILE_SUFFIX = ".trace.json"

#: Most steps one trace file keeps by default (the first ones recorded, in
#: the order they ended): a step is about 200 bytes of JSON, so a file stays
#: near 200 MB however long a test runs.  ``--asyncspec-trace-max-steps``
#: (:data:`~pytest_asyncspec.plugin.settings.TRACE_MAX_STEPS`) sets it; the file's ``otherData``
#: says when steps were left out.
MAX_STEPS = 1_000_000
MAX_STEPS_OPTION = "--asyncspec-trace-max-steps"

#: The single process id the export uses: one file holds one test.
_PID = 1

#: Longest file name :func:`trace_file_name` returns, suffix included: far
#: under the 255 bytes most file systems allow, leaving room for a directory
#: on systems with short path limits.
_MAX_FILE_NAME = 120

_HASH_CHARS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DOTS = re.compile(r"\.{2,}")

_TICKS_PER_MICROSECOND = TICKS_PER_SECOND // 1_000_000


def to_trace_events(
    trace: Trace, *, test_id: str | None = None, max_steps: int = MAX_STEPS
) -> dict[str, Any]:
    """The trace as a Trace Event Format object, ready for :func:`json.dumps`.

    One track a task (``pid`` 1, ``tid`` = the task's label), named after the
    task; ``test_id`` names the process and is copied to ``otherData``.  At
    most ``max_steps`` steps are kept (see :data:`MAX_STEPS`).
    """
    events, other = _export(trace, test_id, max_steps)
    return {"traceEvents": list(events), "displayTimeUnit": "ms", "otherData": other}


def _export(
    trace: Trace, test_id: str | None, max_steps: int
) -> tuple[Iterator[dict[str, Any]], dict[str, Any]]:
    """The events, made one at a time as they are read, and ``otherData``.

    Only a few integers a step are held at once (to sort the events), never
    the events themselves: writing a file of a million steps does not hold a
    million dictionaries.
    """
    recorded = len(trace)
    kept = min(recorded, max_steps)
    clipped = kept < recorded
    # (ts, tid, order, step index or -1): at one instant on one track,
    # "created" comes before the steps (in the order they ran) and "ended"
    # after them.  A stable order makes files diffable; viewers do not need one.
    timed: list[tuple[int, int, int, int]] = []
    finish: dict[int, Step] = {}
    stepped: set[int] = set()
    for index in range(kept):
        step = trace.step(index)
        timed.append((_ticks(step.start), step.task, 1 + index, index))
        stepped.add(step.task)
        if step.awaits is Awaits.DONE:
            finish[step.task] = step
    # A clipped file keeps the tasks that stepped in the steps it keeps.
    tasks = {
        label: record
        for label, record in sorted(trace.tasks.items())
        if not clipped or label in stepped
    }
    last = kept + 1
    for label, record in tasks.items():
        timed.append((_ticks(record.created_at), label, 0, -1))
        done = finish.get(label)
        if done is not None:
            timed.append((_ticks(done.end), label, last, -1))
    timed.sort()
    process = test_id if test_id is not None else "asyncspec trace"
    # Steps are named after their task's coroutine, looked up once a task.
    names = {label: _text(record.coroutine) for label, record in tasks.items() if record.coroutine}

    def events() -> Iterator[dict[str, Any]]:
        yield _metadata("process_name", 0, {"name": _text(process)})
        for label, record in tasks.items():
            yield _metadata("thread_name", label, {"name": _text(record.shown_name)})
            # Without a sort index viewers order tracks by first event or
            # name; the label order is creation order, which reads best.
            yield _metadata("thread_sort_index", label, {"sort_index": label})
        for ticks, label, order, index in timed:
            if index >= 0:
                yield _step_event(trace.step(index), ticks, names.get(label))
            elif order == 0:
                yield _instant_event("created", label, ticks, _created(tasks[label]))
            else:
                record = tasks[label]
                ended = {"outcome": record.outcome.value, "error": _text_or_none(record.error)}
                yield _instant_event("ended", label, ticks, ended)

    other: dict[str, Any] = {
        "producer": "pytest-asyncspec",
        "test_id": _text_or_none(test_id),
        "time_base": (
            "loop time: ts and dur are the event loop's clock in microseconds; "
            "on the virtual clock they are virtual time, not wall-clock time"
        ),
        "tasks": len(tasks),
        "steps": kept,
        "steps_recorded": recorded,
        "clipped": (
            f"this file keeps the first {kept:,} of the {recorded:,} steps recorded "
            f"(at most {max_steps:,} steps a file: {MAX_STEPS_OPTION}), and the tasks "
            "that ran in them"
            if clipped
            else None
        ),
    }
    return events(), other


def write_trace_events(
    trace: Trace,
    path: str | os.PathLike[str],
    *,
    test_id: str | None = None,
    max_steps: int = MAX_STEPS,
) -> Path:
    """Write :func:`to_trace_events` to ``path`` and return the path written.

    Parent directories are created.  The JSON goes to a temporary file in the
    same directory first and is then renamed over ``path``, so a reader (or a
    parallel worker writing the same name) never sees a half-written file; a
    path that is not a regular file is never replaced (see
    :mod:`~pytest_asyncspec.plugin.report_files`).  The events are encoded one by one as they are
    written.
    """
    from ..plugin.report_files import write_report

    target = Path(path)
    events, other = _export(trace, test_id, max_steps)
    write_report(target, _json_pieces(events, other))
    return target


def _json_pieces(events: Iterator[dict[str, Any]], other: dict[str, Any]) -> Iterator[str]:
    # ensure_ascii keeps the file plain ASCII whatever the task names; the
    # same bytes json.dump(to_trace_events(...)) would give.
    encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
    yield '{"traceEvents":['
    for number, event in enumerate(events):
        yield ("," if number else "") + encode(event)
    yield '],"displayTimeUnit":"ms","otherData":' + encode(other) + "}"


def trace_file_name(nodeid: str) -> str:
    """A safe, unique file name for the trace of the test ``nodeid``.

    The name keeps the readable part of the node id (characters outside
    ``[A-Za-z0-9._-]`` become ``_``, runs of dots collapse to one so no ``..``
    remains, and it never starts with a dot or dash), is capped in length,
    and always ends with a short hash of the full node id: two ids that clean
    up to the same text (``a/b`` and ``a_b``) still get different names, and
    the same id gets the same name on every run and machine.
    """
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    stem = _DOTS.sub(".", _UNSAFE.sub("_", nodeid)).strip("._-")
    if not stem:
        stem = "test"
    room = _MAX_FILE_NAME - len(TRACE_FILE_SUFFIX) - _HASH_CHARS - 1
    stem = stem[:room].rstrip("._-") or "test"
    return f"{stem}-{digest}{TRACE_FILE_SUFFIX}"


# -- events ---------------------------------------------------------------------


def _ticks(seconds: float) -> int:
    # Trace times are whole ticks over TICKS_PER_SECOND: rounding recovers
    # the tick, so durations are exact differences of integers.
    return round(seconds * TICKS_PER_SECOND)


def _micros(ticks: int) -> int | float:
    """Ticks as microseconds: an int when exact, so virtual traces stay integral."""
    whole, rest = divmod(ticks, _TICKS_PER_MICROSECOND)
    return whole if not rest else ticks / _TICKS_PER_MICROSECOND


def _text(value: str) -> str:
    # Lone surrogates (from undecodable bytes) are legal in a Python str but
    # not in JSON that strict parsers accept: write them as escapes instead.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_or_none(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _metadata(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": _PID, "tid": tid, "args": args}


def _step_event(step: Step, start: int, name: str | None) -> dict[str, Any]:
    end = _ticks(step.end)
    return {
        "ph": "X",
        "name": name or "step",
        "cat": "step",
        "pid": _PID,
        "tid": step.task,
        "ts": _micros(start),
        "dur": _micros(max(0, end - start)),
        "args": {
            "task": step.task,
            "index": step.index,
            "awaits": step.awaits.name.lower(),
            "awaited_task": step.awaited_task,
            "inside": step.inside,
            "real_us": _micros(max(0, step.real_ns)),
        },
    }


def _created(record: TaskRecord) -> dict[str, Any]:
    return {
        "task": record.label,
        "parent": record.parent,
        "coroutine": _text(record.coroutine),
        "where": _text(record.created_where),
    }


def _instant_event(name: str, tid: int, ticks: int, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "ph": "i",
        "s": "t",  # scoped to the task's track, not drawn across the process
        "name": name,
        "cat": "task",
        "pid": _PID,
        "tid": tid,
        "ts": _micros(ticks),
        "args": args,
    }
