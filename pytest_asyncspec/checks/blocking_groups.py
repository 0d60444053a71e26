"""Blocking steps grouped by place: one report entry per task and blocking line.

The same blocking line is usually hit many times: a handler called in a
loop, or an explored test whose body runs once per schedule (twenty
schedules, twenty near-identical entries).  A report lists each place once,
with how many steps blocked there, in how many schedules, the worst and the
total time, and how to replay the first schedule that blocked there.  The
failure section, the run's terminal summary and the report fields all show
these groups.

A place is the task (by the name it shows, which stays the same from one
schedule to the next, unlike asyncio's ``Task-N``), the line that made the
blocking call (``file:line in function``, or "not caught"), the clock the
time was measured on, and the rule that allowed the steps, if one did.
Nothing here imports pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tracing.task_table import shown_task_name
from .blocking import BlockingEvent

#: The place shown for steps whose blocking frame was never caught.
NOT_CAUGHT = "(blocking frame not caught)"


@dataclass(frozen=True)
class Schedule:
    """What the steps of one watchdog period ran under."""

    #: How the report names it: "schedule 3", "a replayed schedule", ...
    name: str
    #: The command that replays it, when there is one.
    replay: str | None = None
    #: Counted among the schedules of a group (False for the trial runs of
    #: shrinking, which replay parts of a schedule already counted).
    counted: bool = True


@dataclass
class BlockingGroup:
    """The blocking steps of one place."""

    task: str
    place: str
    clock: str
    rule: str | None
    events: list[BlockingEvent] = field(default_factory=list)
    #: Distinct schedules the steps ran in, in order of first step.
    schedules: list[Schedule] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.events)

    @property
    def worst(self) -> BlockingEvent:
        return max(self.events, key=lambda event: event.duration)

    @property
    def total(self) -> float:
        return sum(event.duration for event in self.events)

    @property
    def first_schedule(self) -> Schedule | None:
        return self.schedules[0] if self.schedules else None

    def tally(self) -> str:
        """How often and how long: "20 steps in 20 schedules, worst ..."."""
        return tally(self.steps, len(self.schedules), self.worst.duration, self.total, self.clock)

    def describe(self, root: str | None = None) -> str:
        """The report entry: the tally when steps repeat, then the worst
        step in full, then the first schedule and its replay command."""
        lines = []
        if self.steps > 1:
            lines.append(f"Blocked here {self.tally()}; the worst step:")
        lines.append(self.worst.describe(root))
        first = self.first_schedule
        if first is not None:
            where = f"First in {first.name}"
            lines.append(f"{where}; replay it with: {first.replay}" if first.replay else where)
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """Plain JSON-able data, for a report field."""
        first = self.first_schedule
        return {
            "task": self.task,
            "place": self.place,
            "clock": self.clock,
            "rule": self.rule,
            "steps": self.steps,
            "schedules": len(self.schedules),
            "worst": self.worst.duration,
            "total": self.total,
            "first_schedule": None if first is None else first.name,
            "replay": None if first is None else first.replay,
        }


def tally(steps: int, schedules: int, worst: float, total: float, clock: str) -> str:
    """ "20 steps in 20 schedules, worst 0.3 s, total 6 s (virtual time)"."""

    def seconds(value: float) -> str:
        # Virtual durations are exact; real ones are measured to the millisecond.
        return f"{value:g} s" if clock == "virtual" else f"{value:.3f} s"

    text = "1 step" if steps == 1 else f"{steps} steps"
    if schedules:
        text += f" in {schedules} schedule{'s' if schedules != 1 else ''}"
    text += f", worst {seconds(worst)}"
    if steps > 1:
        text += f", total {seconds(total)}"
    return f"{text} ({clock} time)"


def summary_line(entry: Mapping[str, Any], root: str | None = None) -> str:
    """One line for a :meth:`BlockingGroup.payload` (or a merge of them);
    the place's file is shown relative to ``root`` when under it, and a
    place in a test's setup or teardown says so (the entry's ``phase``)."""
    place = str(entry["place"])
    if root is not None and place.startswith(root):
        place = place[len(root) :]
    phase = entry.get("phase")
    if phase in ("setup", "teardown"):
        place += f" (at {phase})"
    text = f"task {entry['task']!r} at {place}: " + tally(
        int(entry["steps"]),
        int(entry["schedules"]),
        float(entry["worst"]),
        float(entry["total"]),
        str(entry["clock"]),
    )
    tests = int(entry.get("tests", 1))
    return text + (f", in {tests} tests" if tests > 1 else "")


def merge_payloads(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Payloads of one place from several tests added up (``tests`` counts
    the distinct tests, by an entry's ``test`` when it has one: a test whose
    setup and call blocked at the same place is one test), in order of first
    appearance."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    seen: dict[tuple[Any, ...], set[Any]] = {}
    for number, entry in enumerate(entries):
        key = (entry["task"], entry["place"], entry["clock"], entry.get("rule"), entry.get("phase"))
        test = entry.get("test", number)
        into = merged.get(key)
        if into is None:
            merged[key] = {**entry, "tests": 1}
            seen[key] = {test}
            continue
        if test not in seen[key]:
            seen[key].add(test)
            into["tests"] += 1
        for name in ("steps", "schedules", "total"):
            into[name] += entry[name]
        into["worst"] = max(into["worst"], entry["worst"])
    return list(merged.values())


def place_of(event: BlockingEvent) -> str:
    """The blocking line of ``event`` as a group key and for the report."""
    site = event.site_frame
    return NOT_CAUGHT if site is None else str(site)


def group_events(
    events: Iterable[BlockingEvent], schedules: Mapping[int, Schedule] | None = None
) -> list[BlockingGroup]:
    """``events`` grouped by place, in order of each place's first step.

    ``schedules`` names the schedule of each watchdog period
    (:attr:`BlockingEvent.period`); events of other periods belong to no
    schedule.
    """
    known = schedules or {}
    groups: dict[tuple[str, str, str, str | None], BlockingGroup] = {}
    # Schedule names per group: a schedule run twice (the self-check of a
    # failure) counts once.
    seen: dict[tuple[str, str, str, str | None], set[str]] = {}
    for event in events:
        task = shown_task_name(event.task_name, event.coroutine)
        rule = event.allowed_by.text if event.allowed_by is not None else None
        key = (task, place_of(event), event.clock, rule)
        group = groups.get(key)
        if group is None:
            group = groups[key] = BlockingGroup(task, key[1], event.clock, rule)
            seen[key] = set()
        group.events.append(event)
        schedule = known.get(event.period)
        if schedule is not None and schedule.counted and schedule.name not in seen[key]:
            seen[key].add(schedule.name)
            group.schedules.append(schedule)
    return list(groups.values())


def describe_violations(
    groups: list[BlockingGroup],
    threshold: float,
    *,
    when: str = "",
    note: Callable[[BlockingGroup], str] | None = None,
) -> str:
    """The failure section for blocking steps no rule allowed: a head line
    (``when`` says in which part of the test, "during setup"), then one entry
    per place, each followed by ``note(group)`` when it says something."""
    if not groups:
        return ""
    steps = sum(group.steps for group in groups)
    head = f"{steps} task step(s) held the event loop longer than max_blocking={threshold:g} s"
    if when:
        head += f" {when}"
    if steps != len(groups):
        head += f", at {len(groups)} place(s)"
    entries = []
    for group in groups:
        text = group.describe()
        extra = note(group) if note is not None else ""
        entries.append(f"{text}\n{extra}" if extra else text)
    return "\n\n".join([head + ":", *entries])
