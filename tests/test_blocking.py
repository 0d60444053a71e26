"""The blocking watchdog: steps that hold the loop, named by task and line.

Plain tests that build their own loop, tracer and watchdog.  Real-clock cases
block for 0.3 s against a 0.05 s threshold (or stay far below a 1 s one) so
scheduling noise cannot flip them; virtual-clock cases are exact.
"""

from __future__ import annotations

import asyncio
import importlib
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import blocking_helpers.chain as chain
import pytest

from pytest_asyncspec import VirtualClockLoop
from pytest_asyncspec.checks import blocking_sampler, blocking_sleeps
from pytest_asyncspec.checks.allow_rules import AllowRule, allowing_rule, parse_allow_rules
from pytest_asyncspec.checks.blocking import (
    BlockingEvent,
    BlockingWatchdog,
    FrameSite,
)
from pytest_asyncspec.clock.time_patch import real_perf_counter
from pytest_asyncspec.tracing.trace import Tracer

THRESHOLD = 0.05
BLOCK = 0.3

Main = Callable[[], Coroutine[Any, Any, Any]]


def lines_marked(path: str | Path, marker: str) -> list[int]:
    """Line numbers of a source file whose lines end with the comment ``marker``.

    (Ends with: the line that looks the marker up only contains it.)
    """
    text = Path(path).read_text(encoding="utf-8").splitlines()
    found = [number for number, line in enumerate(text, start=1) if line.endswith(marker)]
    assert found, f"no line of {path} contains {marker!r}"
    return found


def line_marked(path: str | Path, marker: str) -> int:
    (number,) = lines_marked(path, marker)
    return number


def run_watched(
    loop: asyncio.AbstractEventLoop,
    main: Main,
    threshold: float = THRESHOLD,
    *,
    threshold_only: bool = False,
    **options: Any,
) -> tuple[BlockingWatchdog, Any]:
    """Run ``main()`` traced and watched on ``loop``, close the loop, return both.

    ``threshold_only`` records as the plugin does for ``max_blocking`` alone:
    only steps over the threshold, no task details.
    """
    if threshold_only:
        tracer = Tracer(loop, keep_over=threshold, task_details=False)
    else:
        tracer = Tracer(loop)
    tracer.install()
    try:
        with BlockingWatchdog(tracer, threshold, **options) as watchdog:
            result = loop.run_until_complete(main())
    finally:
        tracer.stop()
        loop.close()
    return watchdog, result


def only_event(watchdog: BlockingWatchdog) -> BlockingEvent:
    events = watchdog.events()
    assert len(events) == 1, "\n\n".join(event.describe() for event in events)
    return events[0]


# -- real clock ------------------------------------------------------------


async def sleeps_blocking() -> str:
    time.sleep(BLOCK)  # sleeps_blocking: time.sleep
    return "done"


def blocking_sleep_main() -> Coroutine[Any, Any, str]:
    async def main() -> str:
        return await asyncio.create_task(sleeps_blocking(), name="sleeper")

    return main()


def check_blocking_sleep_event(watchdog: BlockingWatchdog) -> None:
    event = only_event(watchdog)
    assert event.task_name == "sleeper"
    assert event.clock == "real"
    assert event.finished
    assert event.duration >= BLOCK
    assert event.threshold == THRESHOLD
    line = line_marked(__file__, "# sleeps_blocking: time.sleep")
    assert event.site == f"{__file__}:{line} in sleeps_blocking"
    assert event.site_frame is not None
    assert event.site_frame.location == f"{__file__}:{line}"
    assert event.innermost == event.site_frame
    assert event.step_index is not None
    assert watchdog.violations() == [event]
    assert watchdog.watchdog_errors == []


def test_blocking_sleep_on_the_stock_loop_is_reported() -> None:
    watchdog, result = run_watched(asyncio.new_event_loop(), blocking_sleep_main)
    assert result == "done"
    check_blocking_sleep_event(watchdog)


def test_blocking_sleep_on_uvloop_is_reported() -> None:
    uvloop = pytest.importorskip("uvloop")
    watchdog, result = run_watched(uvloop.new_event_loop(), blocking_sleep_main)
    assert result == "done"
    check_blocking_sleep_event(watchdog)


def test_a_call_three_deep_in_a_helper_module_is_named_by_file_and_line() -> None:
    async def main() -> None:
        chain.level_one(BLOCK)  # main: calls level_one

    watchdog, _ = run_watched(asyncio.new_event_loop(), main)
    event = only_event(watchdog)
    helper = chain.__file__
    sleep_line = line_marked(helper, "# blocks here")
    assert event.site == f"{helper}:{sleep_line} in level_three"
    assert event.chain == [
        f"{__file__}:{line_marked(__file__, '# main: calls level_one')} in "
        "test_a_call_three_deep_in_a_helper_module_is_named_by_file_and_line.<locals>.main"
        if hasattr(main.__code__, "co_qualname")
        else f"{__file__}:{line_marked(__file__, '# main: calls level_one')} in main",
        f"{helper}:{line_marked(helper, '# calls level_two')} in level_one",
        f"{helper}:{line_marked(helper, '# calls level_three')} in level_two",
        f"{helper}:{sleep_line} in level_three",
    ]


async def busy_for(seconds: float) -> int:
    deadline = real_perf_counter() + seconds  # busy
    spins = 0  # busy
    while real_perf_counter() < deadline:  # busy
        spins += 1  # busy
    return spins  # busy


def test_a_cpu_bound_step_is_caught_by_duration_with_a_site_in_its_loop() -> None:
    async def main() -> int:
        return await asyncio.create_task(busy_for(BLOCK), name="cruncher")

    watchdog, spins = run_watched(asyncio.new_event_loop(), main)
    assert spins > 0
    event = only_event(watchdog)
    assert event.task_name == "cruncher"
    assert event.duration >= BLOCK
    site = event.site_frame
    assert site is not None
    assert site.filename == __file__
    assert site.function == "busy_for"
    assert site.lineno in lines_marked(__file__, "# busy")


def test_a_c_call_that_holds_the_gil_is_still_caught() -> None:
    # sum() over a range runs in C without ever releasing the GIL, so the
    # sampler cannot look while it runs: it looks just after (same line) or
    # finds the step by its duration in the trace.
    # The fastest of a few runs: a load spike while calibrating must not
    # shrink the call below the threshold.
    per_batch = 1.0
    for _ in range(5):
        began = real_perf_counter()
        sum(range(100_000))
        per_batch = min(per_batch, real_perf_counter() - began)
    # Sums of large numbers cost more per item: this runs well over BLOCK / 2.
    count = int(BLOCK / 2 / max(per_batch, 1e-5) * 100_000)

    async def main() -> int:
        return sum(range(count))  # holds the GIL

    watchdog, _ = run_watched(asyncio.new_event_loop(), main)
    event = only_event(watchdog)
    assert event.duration > THRESHOLD
    line = line_marked(__file__, "# holds the GIL")
    assert event.site_frame is None or event.site_frame.location == f"{__file__}:{line}"


def test_a_synchronous_socket_read_is_reported() -> None:
    reader, writer = socket.socketpair()
    # The peer answers from another thread after BLOCK s: until then the
    # loop thread is stuck in recv.
    answer = threading.Timer(BLOCK, writer.send, (b"x",))

    async def main() -> bytes:
        answer.start()
        return reader.recv(1)  # sync socket read

    try:
        watchdog, data = run_watched(asyncio.new_event_loop(), main)
    finally:
        answer.join()
        reader.close()
        writer.close()
    assert data == b"x"
    event = only_event(watchdog)
    assert event.site == f"{__file__}:{line_marked(__file__, '# sync socket read')} in " + (
        "test_a_synchronous_socket_read_is_reported.<locals>.main"
        if hasattr(main.__code__, "co_qualname")
        else "main"
    )


def test_the_site_is_the_users_line_when_the_block_is_inside_the_stdlib() -> None:
    empty: queue.Queue[int] = queue.Queue()

    async def main() -> None:
        with pytest.raises(queue.Empty):
            empty.get(timeout=BLOCK)  # stdlib call

    watchdog, _ = run_watched(asyncio.new_event_loop(), main)
    event = only_event(watchdog)
    site = event.site_frame
    assert site is not None
    assert (site.filename, site.lineno) == (__file__, line_marked(__file__, "# stdlib call"))
    innermost = event.innermost
    assert innermost is not None
    assert innermost.library
    assert Path(innermost.filename).name in {"queue.py", "threading.py"}
    # The chain runs on from the user's line into the library.
    assert event.chain[0] == str(site)
    assert event.chain[-1] == str(innermost)


def test_steps_under_the_threshold_are_not_reported() -> None:
    async def short(index: int) -> None:
        for _ in range(5):
            time.sleep(0.001)
            await asyncio.sleep(0.002)

    async def main() -> None:
        await asyncio.gather(*(short(index) for index in range(10)))

    watchdog, _ = run_watched(asyncio.new_event_loop(), main, threshold=1.0)
    assert watchdog.events() == []
    assert watchdog.violations() == []
    assert watchdog.watchdog_errors == []


def test_a_long_step_the_sampler_never_saw_is_reported_by_duration() -> None:
    # The sampler never wakes during the run, as when a C call holds the GIL
    # for the whole step: the trace still shows the step was too long, and a
    # rule that would match any frame cannot allow a step whose frames nobody saw.
    everything = AllowRule("*.py")
    watchdog, _ = run_watched(
        asyncio.new_event_loop(), blocking_sleep_main, sample_interval=60, allow=[everything]
    )
    event = only_event(watchdog)
    assert event.task_name == "sleeper"
    assert event.duration >= BLOCK
    assert event.frames == ()
    assert event.site is None
    assert watchdog.violations() == [event]
    assert not everything.used
    assert "Blocking call: not caught" in event.describe()
    assert "no allow rule can apply to it" in event.describe()
    assert "created at" in event.describe()


def test_a_step_still_blocking_when_the_watchdog_stops_is_reported_unfinished() -> None:
    loop = asyncio.new_event_loop()
    tracer = Tracer(loop)
    tracer.install()
    watchdog = BlockingWatchdog(tracer, THRESHOLD)
    released = threading.Event()

    def stop_then_release() -> None:
        watchdog.stop()
        released.set()

    # Another thread stops the watchdog while the loop thread is blocked, and
    # only then lets it go: the step is certainly still blocking at the stop.
    stopper = threading.Timer(BLOCK / 2, stop_then_release)

    async def stuck() -> None:
        stopper.start()
        released.wait(timeout=30)  # stuck: still blocking

    try:
        watchdog.start()
        loop.run_until_complete(loop.create_task(stuck(), name="stuck"))
    finally:
        stopper.join()
        tracer.stop()
        loop.close()
    event = only_event(watchdog)
    assert not event.finished
    assert event.duration > BLOCK / 2
    assert event.site_frame is not None
    assert event.site_frame.lineno == line_marked(__file__, "# stuck: still blocking")
    assert "still blocking when the watchdog stopped" in event.describe()


# -- virtual clock ---------------------------------------------------------


async def sleeps_virtually() -> None:
    time.sleep(2.5)  # sleeps_virtually: time.sleep


def test_a_blocking_sleep_on_the_virtual_clock_is_reported_exactly() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.create_task(sleeps_virtually(), name="dozer")
        return loop.time() - start

    watchdog, elapsed = run_watched(VirtualClockLoop(), main, threshold=1.0)
    assert elapsed == 2.5
    event = only_event(watchdog)  # the sleep took no real time: no real event
    assert event.clock == "virtual"
    assert event.duration == 2.5
    assert event.sleep_calls == 1
    assert event.task_name == "dozer"
    line = line_marked(__file__, "# sleeps_virtually: time.sleep")
    assert event.site == f"{__file__}:{line} in sleeps_virtually"
    report = event.describe()
    assert "2.5 s (virtual time, in 1 blocking time.sleep() call; threshold 1 s)" in report
    assert "asyncio.sleep" in report


def test_the_blocking_sleeps_of_one_step_add_up_exactly() -> None:
    async def many_short() -> None:
        for _ in range(10):
            time.sleep(0.1)
        await asyncio.sleep(0)
        for _ in range(5):
            time.sleep(0.1)  # exactly the threshold: not longer than it

    async def main() -> None:
        await asyncio.create_task(many_short(), name="ticker")

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=0.5)
    event = only_event(watchdog)
    assert event.duration == 1.0
    assert event.sleep_calls == 10


@pytest.mark.parametrize("threshold_only", [False, True], ids=["full-trace", "threshold-only"])
def test_the_blocking_sleeps_of_separate_steps_stay_separate(threshold_only: bool) -> None:
    """Each step of a task is its own event, however close in real time the
    steps are: recording only long steps stamps them with the coarse clock,
    whose tick (1-4 ms) is far longer than these virtual-clock steps take, so
    a task's steps often share a start stamp.  They used to be merged into
    one event (0.2 s "in 2 blocking time.sleep() calls"), differently from
    run to run; the report must be the full trace's, every time."""

    async def worker() -> None:
        for _ in range(4):
            time.sleep(0.1)
            await asyncio.sleep(0)  # the step ends here

    async def main() -> None:
        await asyncio.gather(*(asyncio.create_task(worker(), name=f"w{i}") for i in range(3)))

    watchdog, _ = run_watched(
        VirtualClockLoop(), main, threshold=0.05, threshold_only=threshold_only
    )
    events = watchdog.events()
    assert [(event.task_name, event.duration, event.sleep_calls) for event in events] == [
        (f"w{i}", 0.1, 1) for _ in range(4) for i in range(3)
    ], "\n\n".join(event.describe() for event in events)
    assert all(event.finished for event in events)
    assert watchdog.watchdog_errors == []


def test_virtual_sleeps_under_the_threshold_are_not_reported() -> None:
    async def main() -> None:
        for _ in range(20):
            time.sleep(0.4)
            await asyncio.sleep(1)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=0.5)
    assert watchdog.events() == []


def test_a_virtual_call_three_deep_shows_the_whole_chain() -> None:
    async def main() -> None:
        chain.level_one(3.0)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0)
    event = only_event(watchdog)
    assert event.duration == 3.0
    helper = chain.__file__
    assert event.site == f"{helper}:{line_marked(helper, '# blocks here')} in level_three"
    assert [frame.function for frame in event.frames[1:]] == [
        "level_one",
        "level_two",
        "level_three",
    ]


def test_the_previous_sleep_listener_is_chained_and_then_restored() -> None:
    loop = VirtualClockLoop()
    heard: list[float] = []

    def previous(seconds: float, frame: FrameType) -> None:
        heard.append(seconds)

    loop.on_blocking_sleep = previous

    async def main() -> None:
        time.sleep(2.0)

    watchdog, _ = run_watched(loop, main, threshold=1.0)
    assert heard == [2.0]
    assert loop.on_blocking_sleep is previous
    assert only_event(watchdog).duration == 2.0


# -- allow rules -----------------------------------------------------------


def test_an_allow_rule_suppresses_a_matching_event_and_is_marked_used() -> None:
    helper_line = line_marked(chain.__file__, "# blocks here")
    matching = AllowRule(f"blocking_helpers/chain.py:{helper_line}")
    elsewhere = AllowRule("no_such_package/*.py")

    async def main() -> None:
        chain.level_one(BLOCK)

    watchdog, _ = run_watched(asyncio.new_event_loop(), main, allow=[elsewhere, matching])
    assert watchdog.violations() == []
    (event,) = watchdog.allowed()
    assert event.allowed_by is matching
    assert "Allowed by rule" in event.describe()
    assert matching.used
    assert matching.hits == 1
    assert watchdog.unused_rules() == [elsewhere]


def test_a_rule_naming_the_users_caller_does_not_allow_the_call_below_it() -> None:
    """``level_three`` (the user's code) makes the blocking call: a rule naming
    ``level_two``, its caller, is above the first user frame and allows
    nothing; the rule naming ``level_three`` itself does."""
    caller = AllowRule("blocking_helpers.chain.level_two")

    async def main() -> None:
        chain.level_one(2.0)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0, allow=[caller])
    assert len(watchdog.violations()) == 1
    assert not caller.used
    blocker = AllowRule("blocking_helpers.chain.level_three")
    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0, allow=[caller, blocker])
    assert watchdog.violations() == []
    assert [event.allowed_by for event in watchdog.allowed()] == [blocker]
    assert not caller.used


def stack_frame(name: str, *, library: bool) -> FrameSite:
    folder = "/venv/lib/python3/site-packages" if library else "/src"
    return FrameSite(f"{folder}/{name}.py", 10, name, name, library=library)


#: A web request, outermost first: the framework's dispatcher (a library)
#: calls the user's handler, which calls an HTTP client (a library) that
#: blocks in a socket read (the stdlib).
REQUEST_STACK = (
    stack_frame("dispatcher", library=True),
    stack_frame("handler", library=False),
    stack_frame("client", library=True),
    stack_frame("socket", library=True),
)


@pytest.mark.parametrize(
    ("rules", "allowed_by"),
    [
        pytest.param(["dispatcher.py"], None, id="outer-library-frame"),
        pytest.param(["*/site-packages/*.py", "dispatcher.py"], 0, id="library-glob"),
        pytest.param(["handler.handler"], 0, id="first-user-frame"),
        pytest.param(["client.py"], 0, id="library-between"),
        pytest.param(["socket.py:10"], 0, id="blocking-frame"),
        pytest.param(["dispatcher.py", "client.client"], 1, id="only-the-near-rule"),
        pytest.param([], None, id="no-rules"),
    ],
)
def test_a_rule_allows_only_frames_from_the_blocking_call_to_the_users_code(
    rules: list[str], allowed_by: int | None
) -> None:
    parsed = parse_allow_rules(rules)
    found = allowing_rule(parsed, REQUEST_STACK)
    assert found is (None if allowed_by is None else parsed[allowed_by])


def test_a_stack_of_library_frames_alone_may_be_allowed_anywhere() -> None:
    # A library's own task: no user frame to stop at.
    stack = (stack_frame("pool", library=True), stack_frame("socket", library=True))
    (rule,) = parse_allow_rules(["pool.py"])
    assert allowing_rule([rule], stack) is rule


def test_a_step_whose_frames_were_not_caught_is_never_allowed() -> None:
    assert allowing_rule(parse_allow_rules(["*.py", "*.*"]), ()) is None


@pytest.fixture
def fake_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A module under a directory named site-packages: an installed package
    as far as the watchdog can tell."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    (folder / "asyncspec_fakelib.py").write_text(FAKE_LIBRARY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("asyncspec_fakelib")
    monkeypatch.setitem(sys.modules, "asyncspec_fakelib", module)
    return module


FAKE_LIBRARY = """\
import time


def fetch(seconds):
    time.sleep(seconds)  # the library blocks here


def dispatch(handler, *args):
    return handler(*args)  # the framework calls the user's handler


def wait_for(event, timeout):
    event.wait(timeout)  # the library waits here
"""


async def calls_the_library(library: ModuleType) -> None:
    library.fetch(2.0)  # the user calls the library


def test_a_library_frame_between_the_call_and_the_users_code_is_allowed(
    fake_library: ModuleType,
) -> None:
    """The blocking line is the user's call into the library; a rule naming
    the library's function allows it, one naming the test that called the
    user's coroutine does not."""
    user_line = line_marked(__file__, "# the user calls the library")

    async def main() -> None:
        await calls_the_library(fake_library)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0)
    event = only_event(watchdog)
    assert event.innermost is not None
    assert event.innermost.library
    assert event.site == f"{__file__}:{user_line} in calls_the_library"
    # The coroutine awaiting the user's one is further out: a rule naming
    # its line does not allow what the user's code below it calls.
    caller = AllowRule(f"test_blocking.py:{line_marked(__file__, '# main awaits')}")
    library = AllowRule("asyncspec_fakelib.fetch")

    async def main_marked() -> None:
        await calls_the_library(fake_library)  # main awaits

    watchdog, _ = run_watched(
        VirtualClockLoop(), main_marked, threshold=1.0, allow=[caller, library]
    )
    assert [event.allowed_by for event in watchdog.events()] == [library]
    assert not caller.used
    watchdog, _ = run_watched(VirtualClockLoop(), main_marked, threshold=1.0, allow=[caller])
    assert len(watchdog.violations()) == 1


def test_a_framework_rule_does_not_silence_the_users_handler(fake_library: ModuleType) -> None:
    """The framework's dispatcher (a library frame above the user's handler)
    matches a path rule; the handler's own time.sleep below it is reported."""

    def handler() -> None:
        time.sleep(2.0)  # the handler blocks

    async def main() -> None:
        fake_library.dispatch(handler)

    framework = AllowRule("*/site-packages/asyncspec_fakelib.py")
    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0, allow=[framework])
    (event,) = watchdog.violations()
    assert event.site_frame is not None
    assert event.site_frame.lineno == line_marked(__file__, "# the handler blocks")
    assert not framework.used


@pytest.mark.parametrize("library_first", [True, False])
def test_a_rule_allows_the_call_it_names_not_the_rest_of_the_step(
    fake_library: ModuleType, library_first: bool
) -> None:
    """One step blocks in the library (allowed, 0.3 s) and in the user's own
    time.sleep (0.2 s): the step is reported, named by the user's sleep,
    whichever came first, though the library's sleep is the longer.  A sleep
    of the user's under the threshold beside an allowed one leaves the step
    allowed."""
    rule = AllowRule("asyncspec_fakelib.fetch")

    async def both() -> None:
        if library_first:
            fake_library.fetch(0.3)
        time.sleep(0.2)  # the user's own sleep
        if not library_first:
            fake_library.fetch(0.3)

    watchdog, _ = run_watched(VirtualClockLoop(), both, allow=[rule])
    (event,) = watchdog.violations()
    assert event.duration == pytest.approx(0.5)
    assert event.site_frame is not None
    assert event.site_frame.lineno == line_marked(__file__, "# the user's own sleep")

    async def mostly_allowed() -> None:
        fake_library.fetch(0.2)
        time.sleep(0.01)

    watchdog, _ = run_watched(VirtualClockLoop(), mostly_allowed, allow=[rule])
    assert watchdog.violations() == []
    assert [event.allowed_by for event in watchdog.allowed()] == [rule]


@pytest.mark.parametrize("library_first", [True, False])
def test_on_the_real_clock_a_rule_allows_the_call_it_names_not_the_rest_of_the_step(
    fake_library: ModuleType, library_first: bool
) -> None:
    """The same on the real clock, where the sampler judges each look: one
    step blocks in the library (allowed) and in the user's own time.sleep,
    0.3 s each against a 0.05 s threshold, and is reported at the user's
    line; a 10 ms sleep of the user's beside an allowed call is not."""
    rule = AllowRule("asyncspec_fakelib.fetch")

    async def both() -> None:
        if library_first:
            fake_library.fetch(BLOCK)
        time.sleep(BLOCK)  # the user's own real sleep
        if not library_first:
            fake_library.fetch(BLOCK)

    watchdog, _ = run_watched(asyncio.new_event_loop(), both, allow=[rule])
    (event,) = watchdog.violations()
    assert event.duration >= 2 * BLOCK
    assert event.site_frame is not None
    assert event.site_frame.lineno == line_marked(__file__, "# the user's own real sleep")

    async def mostly_allowed() -> None:
        fake_library.fetch(BLOCK)
        time.sleep(0.01)

    watchdog, _ = run_watched(asyncio.new_event_loop(), mostly_allowed, allow=[rule])
    assert watchdog.violations() == []
    assert [event.allowed_by for event in watchdog.allowed()] == [rule]


class SteppedWakes:
    """Stands in for the watchdog's stop event, so that its sampler wakes
    exactly when the test asks (:meth:`wake`) and at no other time."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: list[threading.Event] = []
        self._serving: threading.Event | None = None
        self._stopped = False

    def wake(self) -> threading.Event:
        """One wake of the sampler; the event is set once it has looked."""
        done = threading.Event()
        with self._lock:
            self._pending.append(done)
            self._lock.notify_all()
        return done

    def wait(self, timeout: float | None = None) -> bool:
        with self._lock:
            if self._serving is not None:
                self._serving.set()  # the previous wake is over
                self._serving = None
            while not self._pending and not self._stopped:
                self._lock.wait()
            if self._pending:
                self._serving = self._pending.pop(0)
                return False
            return True

    def set(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify_all()


def test_whether_a_step_is_allowed_does_not_depend_on_when_the_sampler_looked(
    fake_library: ModuleType,
) -> None:
    """Two steps block in the same library call.  The sampler looks at the
    first only before it passes the threshold (at 0.6 of it: the step ends at
    1.1), at the second after it.  Both are allowed by the rule naming the
    library; neither is left without its frames."""
    threshold = 0.4
    loop = asyncio.new_event_loop()
    tracer = Tracer(loop)
    tracer.install()
    watchdog = BlockingWatchdog(tracer, threshold, allow=["asyncspec_fakelib.wait_for"])
    wakes = SteppedWakes()
    watchdog._sampler._stop_event = wakes  # type: ignore[assignment]

    def look_at(fraction: float, then: float) -> None:
        time.sleep(threshold * fraction)
        fake_library.wait_for(wakes.wake(), 30)
        time.sleep(threshold * then)

    async def main() -> None:
        look_at(0.6, 0.5)
        await asyncio.sleep(0)
        look_at(1.2, 0.1)

    try:
        with watchdog:
            loop.run_until_complete(loop.create_task(main(), name="looked-at"))
    finally:
        tracer.stop()
        loop.close()
    events = watchdog.events()
    assert [event.duration > threshold for event in events] == [True, True]
    assert watchdog.violations() == [], "\n\n".join(e.describe() for e in events)
    assert all(event.innermost is not None for event in events)
    assert events[0].site_frame == events[1].site_frame


def test_a_rule_that_matches_nothing_leaves_the_event_a_violation() -> None:
    rule = AllowRule("blocking_helpers/chain.py:1")

    async def main() -> None:
        chain.level_one(2.0)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0, allow=[rule])
    assert len(watchdog.violations()) == 1
    assert watchdog.unused_rules() == [rule]
    assert not rule.used


def site(
    filename: str, lineno: int = 7, function: str = "fetch", module: str = "app.db"
) -> FrameSite:
    return FrameSite(filename, lineno, function, module, library=False)


@pytest.mark.parametrize(
    ("rule", "frame", "expected"),
    [
        ("app/db.py", site("/src/app/db.py"), True),
        ("app/db.py", site("/src/myapp/db.py"), False),  # only at a '/' boundary
        ("db.py", site("/src/app/db.py"), True),
        ("app/*.py", site("/src/app/db.py"), True),
        ("app/db.py:7", site("/src/app/db.py", 7), True),
        ("app/db.py:8", site("/src/app/db.py", 7), False),
        ("/src/app/db.py:7", site("/src/app/db.py", 7), True),
        ("/src/app/db.py", site("/other/src/app/db.py"), False),  # absolute: whole path
        ("app.db.fetch", site("/src/app/db.py"), True),
        ("app.db.*", site("/src/app/db.py"), True),
        ("app.*", site("/src/app/db.py"), True),
        ("app.db.store", site("/src/app/db.py"), False),
        ("app.db.Pool.fetch", site("/src/app/db.py", function="Pool.fetch"), True),
        ("app.db.fetch", site("/src/app/db.py", module=""), False),
    ],
)
def test_allow_rule_forms(rule: str, frame: FrameSite, expected: bool) -> None:
    assert AllowRule(rule).matches(frame) is expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("fetch", "neither a file path"),
        ("app db.fetch", "neither a file path"),
        ("app..fetch", "neither a file path"),
        ("app/db.py:x", "positive whole number"),
        ("app/db.py:0", "positive whole number"),
        ("app/db.py:", "positive whole number"),
        ("app.db.fetch:12", "needs a file path"),
        (":12", "needs a file path"),
    ],
)
def test_bad_allow_rules_raise_naming_the_accepted_forms(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="invalid blocking allow rule") as raised:
        AllowRule(text)
    message = str(raised.value)
    assert problem in message
    assert "'path/glob.py:LINE'" in message
    assert "'module.function'" in message


def test_parse_allow_rules_skips_blank_entries() -> None:
    rules = parse_allow_rules(["app/db.py", "  ", "app.db.*"])
    assert [rule.kind for rule in rules] == ["path", "function"]
    assert [str(rule) for rule in rules] == ["app/db.py", "app.db.*"]


def test_a_windows_drive_is_not_mistaken_for_a_line() -> None:
    rule = AllowRule("C:/src/app/db.py")
    assert (rule.kind, rule.line) == ("path", None)
    assert AllowRule("C:/src/app/db.py:3").line == 3


# -- thresholds and options --------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["abc", "", "nan", "inf", "-inf", "-1", "0", "0.0", 0, -0.5, float("nan"), float("inf"), True],
)
def test_invalid_thresholds_raise_saying_what_is_expected(value: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="invalid blocking threshold") as raised:
            BlockingWatchdog(Tracer(loop), value)
    finally:
        loop.close()
    assert "expected a positive number of seconds (e.g. 0.1)" in str(raised.value)
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("0.25", 0.25), (" 2 ", 2.0), (0.1, 0.1), (3, 3.0)]
)
def test_valid_thresholds(value: str | float, expected: float) -> None:
    loop = asyncio.new_event_loop()
    try:
        assert BlockingWatchdog(Tracer(loop), value).threshold == expected
    finally:
        loop.close()


def test_the_watchdog_validates_its_threshold_and_interval() -> None:
    loop = asyncio.new_event_loop()
    try:
        tracer = Tracer(loop)
        with pytest.raises(ValueError, match="invalid blocking threshold 0; expected a positive"):
            BlockingWatchdog(tracer, 0)
        with pytest.raises(ValueError, match="sample_interval"):
            BlockingWatchdog(tracer, 1, sample_interval=0)
        with pytest.raises(ValueError, match="invalid blocking allow rule"):
            BlockingWatchdog(tracer, 1, allow=["nonsense"])
        assert BlockingWatchdog(tracer, 1).sample_interval == 0.25
        assert BlockingWatchdog(tracer, 0.0001).sample_interval == 0.001
    finally:
        loop.close()


@pytest.fixture
def idle_tracer() -> Iterator[Tracer]:
    loop = asyncio.new_event_loop()
    try:
        yield Tracer(loop)
    finally:
        loop.close()


def test_stop_returns_promptly(idle_tracer: Tracer) -> None:
    watchdog = BlockingWatchdog(idle_tracer, 40.0)  # wakes every 10 s
    watchdog.start()
    assert watchdog.running
    time.sleep(0.01)
    began = real_perf_counter()
    watchdog.stop()
    assert real_perf_counter() - began < 1.0
    assert not watchdog.running
    watchdog.stop()  # a second stop is harmless


def test_a_watchdog_starts_once(idle_tracer: Tracer) -> None:
    with (
        BlockingWatchdog(idle_tracer, 1.0) as watchdog,
        pytest.raises(RuntimeError, match="already"),
    ):
        watchdog.start()


# -- the watchdog never breaks the test --------------------------------------


def test_a_crash_in_the_sampler_is_recorded_and_the_step_still_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> dict[int, FrameType]:
        raise RuntimeError("sampler exploded")

    monkeypatch.setattr(blocking_sampler, "_current_frames", broken)
    watchdog, result = run_watched(asyncio.new_event_loop(), blocking_sleep_main)
    assert result == "done"
    assert watchdog.watchdog_errors
    assert "sampler exploded" in watchdog.watchdog_errors[0]
    event = only_event(watchdog)  # found by duration, from the trace
    assert event.task_name == "sleeper"
    assert event.site is None


def test_a_crash_in_the_sleep_listener_never_reaches_the_users_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*frames: FrameType | None) -> Any:
        raise RuntimeError("listener exploded")

    monkeypatch.setattr(blocking_sleeps, "step_frames", broken)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        time.sleep(2.0)
        return loop.time()

    watchdog, now = run_watched(VirtualClockLoop(), main, threshold=1.0)
    assert now == 2.0
    assert any("listener exploded" in error for error in watchdog.watchdog_errors)


# -- reports -----------------------------------------------------------------


def test_describe_is_a_clear_multi_line_report() -> None:
    async def main() -> None:
        await asyncio.create_task(deep(), name="fetcher")

    async def deep() -> None:
        chain.level_one(1.5)

    watchdog, _ = run_watched(VirtualClockLoop(), main, threshold=1.0)
    root = Path(__file__).parent
    lines = only_event(watchdog).describe(root=root).splitlines()
    helper_line = line_marked(chain.__file__, "# blocks here")
    assert lines[0].startswith("Task 'fetcher' (")
    assert "blocked the event loop for 1.5 s (virtual time" in lines[0]
    assert "threshold 1 s" in lines[0]
    assert lines[1] == f"Blocking call: blocking_helpers/chain.py:{helper_line} in level_three"
    assert lines[2] == "Call chain (outermost first):"
    assert lines[3].startswith("    test_blocking.py:")
    assert lines[-2] == f"  > blocking_helpers/chain.py:{helper_line} in level_three"
    assert lines[-1].startswith("Fix: ")


def test_steps_before_the_watchdog_started_are_not_its_business() -> None:
    loop = asyncio.new_event_loop()
    tracer = Tracer(loop)
    tracer.install()
    try:
        loop.run_until_complete(blocking_sleep_main())
        with BlockingWatchdog(tracer, THRESHOLD, sample_interval=60) as watchdog:
            loop.run_until_complete(asyncio.sleep(0))
            # A long gap between the sampler's wakes makes it read the trace.
            time.sleep(2 * THRESHOLD)
    finally:
        tracer.stop()
        loop.close()
    assert watchdog.events() == []
