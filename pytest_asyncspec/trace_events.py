"""Export a :class:`~pytest_asyncspec.trace.Trace` as Trace Event Format JSON.

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

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from .ticks import TICKS_PER_SECOND
from .trace import Awaits, Step, TaskRecord, Trace

__all__ = ["TRACE_FILE_SUFFIX", "to_trace_events", "trace_file_name", "write_trace_events"]

#: Every name :func:`trace_file_name` returns ends with this.
TRACE_FILE_SUFFIX = ".trace.json"

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


def to_trace_events(trace: Trace, *, test_id: str | None = None) -> dict[str, Any]:
    """The trace as a Trace Event Format object, ready for :func:`json.dumps`.

    One track a task (``pid`` 1, ``tid`` = the task's label), named after the
    task; ``test_id`` names the process and is copied to ``otherData``.
    """
    process = test_id if test_id is not None else "asyncspec trace"
    events: list[dict[str, Any]] = [
        _metadata("process_name", 0, {"name": _text(process)}),
    ]
    for label, record in sorted(trace.tasks.items()):
        events.append(_metadata("thread_name", label, {"name": _text(record.shown_name)}))
        # Without a sort index viewers order tracks by first event or name;
        # the label order is creation order, which reads best.
        events.append(_metadata("thread_sort_index", label, {"sort_index": label}))

    # (ts, tid, order, event): at one instant on one track, "created" comes
    # before the steps (in the order they ran) and "ended" after them.  A
    # stable order makes files diffable; viewers do not need one.
    timed: list[tuple[int, int, int, dict[str, Any]]] = []
    finish: dict[int, Step] = {}
    # Steps are named after their task's coroutine, looked up once a task.
    names = {
        label: _text(record.coroutine) for label, record in trace.tasks.items() if record.coroutine
    }
    for step in trace.steps():
        start = _ticks(step.start)
        timed.append(
            (start, step.task, 1 + step.index, _step_event(step, start, names.get(step.task)))
        )
        if step.awaits is Awaits.DONE:
            finish[step.task] = step
    last = len(trace) + 1
    for label, record in trace.tasks.items():
        born = _ticks(record.created_at)
        timed.append((born, label, 0, _instant_event("created", label, born, _created(record))))
        done = finish.get(label)
        if done is not None:
            died = _ticks(done.end)
            ended = {"outcome": record.outcome.value, "error": _text_or_none(record.error)}
            timed.append((died, label, last, _instant_event("ended", label, died, ended)))
    timed.sort(key=lambda entry: entry[:3])
    events.extend(event for *_, event in timed)

    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "producer": "pytest-asyncspec",
            "test_id": _text_or_none(test_id),
            "time_base": (
                "loop time: ts and dur are the event loop's clock in microseconds; "
                "on the virtual clock they are virtual time, not wall-clock time"
            ),
            "tasks": len(trace.tasks),
            "steps": len(trace),
        },
    }


def write_trace_events(
    trace: Trace, path: str | os.PathLike[str], *, test_id: str | None = None
) -> Path:
    """Write :func:`to_trace_events` to ``path`` and return the path written.

    Parent directories are created.  The JSON goes to a temporary file in the
    same directory first and is then renamed over ``path``, so a reader (or a
    parallel worker writing the same name) never sees a half-written file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = to_trace_events(trace, test_id=test_id)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name[:40]}.", suffix=".tmp", dir=target.parent
    )
    try:
        # mkstemp makes the file private (0600); a trace is an ordinary
        # report file, so give it the permissions the umask asks for.
        if hasattr(os, "fchmod"):
            umask = os.umask(0o022)
            os.umask(umask)
            os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            # ensure_ascii keeps the file plain ASCII whatever the task names.
            json.dump(document, stream, ensure_ascii=True, separators=(",", ":"))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


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
