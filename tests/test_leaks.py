"""Leak detection: tasks left pending, coroutines never awaited, the policy parser."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks.allow_rules import first_match, parse_leak_rules
from pytest_asyncspec.checks.leaks import (
    LeakedTask,
    leak_report,
    pending_tasks,
    track_unawaited,
)
from pytest_asyncspec.tracing.trace import Tracer

HERE = __file__


def line_of(marker: str) -> int:
    """The line of this file that carries ``# <marker>`` (so tests survive edits)."""
    with open(HERE, encoding="utf-8") as source:
        for number, text in enumerate(source, start=1):
            if f"# {marker}" in text:
                return number
    raise LookupError(marker)


def finish(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the test left behind, collect outcomes, close the loop."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    finally:
        loop.close()


@pytest.fixture
def loop() -> Iterator[VirtualClockLoop]:
    loop = VirtualClockLoop()
    try:
        yield loop
    finally:
        finish(loop)


async def forgotten(event: asyncio.Event) -> None:
    await event.wait()  # forgotten-suspended


async def leaves_a_task_behind(event: asyncio.Event) -> None:
    asyncio.create_task(forgotten(event), name="forgotten")  # forgotten-created  # noqa: RUF006
    await asyncio.sleep(1)


# -- pending tasks --------------------------------------------------------------


def test_pending_task_is_named_with_its_creation_and_suspension_lines(
    loop: VirtualClockLoop,
) -> None:
    tracer = Tracer(loop)
    tracer.install()
    event = asyncio.Event()
    try:
        loop.run_until_complete(leaves_a_task_behind(event))
    finally:
        tracer.stop()

    (leak,) = pending_tasks(loop, tracer)

    assert leak.name == "forgotten"
    assert leak.coroutine == "forgotten"
    assert leak.label == 2
    assert leak.created_where == f"{HERE}:{line_of('forgotten-created')}"
    assert leak.created_at == 0
    assert leak.chain[0] == f"{HERE}:{line_of('forgotten-suspended')} in forgotten"
    assert "Event.wait" in leak.chain[-1]
    assert leak.awaiting.startswith("asyncio Event.wait()")
    text = leak.describe()
    assert f"created at {HERE}:{line_of('forgotten-created')} (loop time 0 s)" in text
    assert f"suspended at {HERE}:{line_of('forgotten-suspended')} in forgotten" in text


def test_untraced_task_in_debug_mode_uses_the_source_traceback(
    loop: VirtualClockLoop,
) -> None:
    loop.set_debug(True)
    event = asyncio.Event()
    loop.run_until_complete(leaves_a_task_behind(event))

    (leak,) = pending_tasks(loop)

    assert leak.label is None
    assert leak.created_at is None
    assert leak.created_where == f"{HERE}:{line_of('forgotten-created')}"
    assert leak.chain[0] == f"{HERE}:{line_of('forgotten-suspended')} in forgotten"


def test_untraced_task_without_debug_has_an_unknown_origin(loop: VirtualClockLoop) -> None:
    event = asyncio.Event()
    loop.run_until_complete(leaves_a_task_behind(event))

    (leak,) = pending_tasks(loop)

    assert leak.created_where == "unknown"
    assert leak.chain[0] == f"{HERE}:{line_of('forgotten-suspended')} in forgotten"


def test_finished_tasks_are_not_leaks(loop: VirtualClockLoop) -> None:
    tracer = Tracer(loop)
    tracer.install()

    async def main() -> None:
        await asyncio.gather(asyncio.sleep(1), asyncio.sleep(2))

    try:
        loop.run_until_complete(main())
    finally:
        tracer.stop()

    assert pending_tasks(loop, tracer) == []
    assert leak_report([]) == ""


def test_traced_leaks_come_oldest_first(loop: VirtualClockLoop) -> None:
    tracer = Tracer(loop)
    tracer.install()
    event = asyncio.Event()

    async def main() -> None:
        for name in ("zeta", "alpha", "mid"):
            asyncio.create_task(forgotten(event), name=name)  # noqa: RUF006
        await asyncio.sleep(0)

    try:
        loop.run_until_complete(main())
    finally:
        tracer.stop()

    assert [leak.name for leak in pending_tasks(loop, tracer)] == ["zeta", "alpha", "mid"]


def test_leak_report_lists_every_leak(loop: VirtualClockLoop) -> None:
    tracer = Tracer(loop)
    tracer.install()
    event = asyncio.Event()
    try:
        loop.run_until_complete(leaves_a_task_behind(event))
    finally:
        tracer.stop()

    report = leak_report(pending_tasks(loop, tracer))

    assert report.startswith("1 task(s) still pending at the end of the test")
    assert "task 'forgotten' (forgotten) [label 2] is still pending" in report


# -- coroutines never awaited ---------------------------------------------------


async def helper() -> int:
    return 1


def drop_a_coroutine() -> None:
    helper()  # type: ignore[unused-coroutine]  # dropped-here


def test_unawaited_coroutine_is_reported_with_its_origin_line() -> None:
    with track_unawaited() as dropped:
        drop_a_coroutine()

    (leak,) = dropped
    assert leak.name == "helper"
    assert leak.created_where == f"{HERE}:{line_of('dropped-here')}"
    assert leak.origin[0] == f"{HERE}:{line_of('dropped-here')} in drop_a_coroutine"
    assert "test_unawaited_coroutine_is_reported_with_its_origin_line" in leak.origin[1]
    assert "was never awaited" in leak.message
    assert leak.describe() == (
        f"coroutine 'helper' was never awaited; created at {HERE}:{line_of('dropped-here')}"
    )
    assert "1 coroutine(s) created but never awaited" in leak_report([], dropped)


def test_coroutine_in_a_reference_cycle_is_collected_inside_the_block() -> None:
    with track_unawaited() as dropped:
        holder: dict[str, Any] = {}
        holder["self"] = holder
        holder["coro"] = helper()  # cycle-here
        del holder

    assert [leak.created_where for leak in dropped] == [f"{HERE}:{line_of('cycle-here')}"]


def test_awaited_coroutines_are_not_reported(loop: VirtualClockLoop) -> None:
    with track_unawaited() as dropped:
        assert loop.run_until_complete(helper()) == 1

    assert dropped == []


def test_origin_tracking_depth_is_restored() -> None:
    before = sys.get_coroutine_origin_tracking_depth()
    with track_unawaited(depth=before + 3):
        assert sys.get_coroutine_origin_tracking_depth() == before + 3
    assert sys.get_coroutine_origin_tracking_depth() == before

    with pytest.raises(KeyError), track_unawaited():
        raise KeyError("boom")
    assert sys.get_coroutine_origin_tracking_depth() == before


def test_origin_is_read_from_the_message_without_a_source() -> None:
    # Warnings re-raised by other tools may lose their source object; the
    # message still carries the creation stack.
    message = (
        "coroutine 'helper' was never awaited\n"
        "Coroutine created at (most recent call last)\n"
        '  File "/src/app.py", line 10, in main\n'
        "    run()\n"
        '  File "/src/app.py", line 4, in run\n'
        "    helper()"
    )
    with track_unawaited() as dropped:
        warnings.warn_explicit(message, RuntimeWarning, "/src/app.py", 4)

    (leak,) = dropped
    assert leak.created_where == "/src/app.py:4"
    assert leak.origin == ("/src/app.py:4 in run", "/src/app.py:10 in main")


def test_other_warnings_are_reemitted_unchanged() -> None:
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with track_unawaited() as dropped:
            warnings.warn("unrelated", RuntimeWarning, stacklevel=1)
            warnings.warn("also unrelated", UserWarning, stacklevel=1)
            drop_a_coroutine()

    assert len(dropped) == 1
    assert sorted((w.category.__name__, str(w.message)) for w in outer) == [
        ("RuntimeWarning", "unrelated"),
        ("UserWarning", "also unrelated"),
    ]
    assert all(w.filename == HERE for w in outer)


def test_reemitted_warnings_still_obey_an_error_filter() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="unrelated"), track_unawaited():
            warnings.warn("unrelated", RuntimeWarning, stacklevel=1)


def test_an_error_in_the_block_wins_over_reemitted_warnings() -> None:
    def warn_then_fail() -> None:
        with track_unawaited():
            warnings.warn("unrelated", RuntimeWarning, stacklevel=1)
            raise KeyError("the real problem")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyError, match="the real problem"):
            warn_then_fail()


def test_no_leak_escapes_to_the_outer_filters() -> None:
    # Under this project's filterwarnings=error an escaped "never awaited"
    # warning would fail this test (as an unraisable exception).
    with track_unawaited() as dropped:
        drop_a_coroutine()
        drop_a_coroutine()
    gc.collect()
    assert len(dropped) == 2


# -- what an allow rule can name ---------------------------------------------------


class Keeper:
    async def keep(self, event: asyncio.Event) -> None:
        await event.wait()


async def starts_a_keeper(event: asyncio.Event) -> None:
    asyncio.create_task(Keeper().keep(event), name="keeper")  # keeper-created  # noqa: RUF006
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    "rule",
    [
        f"{__name__}.Keeper.keep",
        f"{__name__}.*",
        "test_leaks.py",
        "tests/test_leaks.py",
        f"test_leaks.py:{line_of('keeper-created')}",
    ],
)
def test_a_leaked_task_matches_rules_naming_its_coroutine_or_creation_line(
    loop: VirtualClockLoop, rule: str
) -> None:
    """A leaked task is named by its coroutine (module and qualified name,
    globs allowed) and by the file and line that created it."""
    event = asyncio.Event()
    tracer = Tracer(loop)
    with tracer:
        loop.run_until_complete(starts_a_keeper(event))
    (leak,) = pending_tasks(loop, tracer)
    (allow,) = parse_leak_rules([rule])
    assert first_match([allow], leak.sites) is allow
    assert allow.hits == 1


@pytest.mark.parametrize("rule", [f"{__name__}.Keeper.other", "other_module.*", "test_leaks.py:1"])
def test_a_leaked_task_is_not_matched_by_rules_naming_other_places(
    loop: VirtualClockLoop, rule: str
) -> None:
    event = asyncio.Event()
    tracer = Tracer(loop)
    with tracer:
        loop.run_until_complete(starts_a_keeper(event))
    (leak,) = pending_tasks(loop, tracer)
    (allow,) = parse_leak_rules([rule])
    assert first_match([allow], leak.sites) is None
    assert allow.hits == 0


async def flush() -> None:
    pass


def test_an_unawaited_coroutine_matches_its_function_and_creation_line() -> None:
    with track_unawaited() as found:
        flush()  # flush-created
    (coroutine,) = found
    by_function, by_line = parse_leak_rules(
        [f"{__name__}.flush", f"test_leaks.py:{line_of('flush-created')}"]
    )
    assert first_match([by_function], coroutine.sites) is by_function
    assert first_match([by_line], coroutine.sites) is by_line


def test_a_bad_leak_rule_is_called_a_leak_rule() -> None:
    with pytest.raises(ValueError, match=r"^invalid leak allow rule 'a:b': the line after"):
        parse_leak_rules(["a:b"])


def test_describe_says_when_a_task_was_started() -> None:
    leak = LeakedTask(
        name="worker",
        coroutine="work",
        label=2,
        created_where="test_x.py:3",
        created_at=0.0,
        chain=(),
        awaiting="nothing",
        started="during setup (fixture 'service')",
    )
    assert "  created at test_x.py:3 (loop time 0 s) during setup (fixture 'service')" in (
        leak.describe().splitlines()
    )
