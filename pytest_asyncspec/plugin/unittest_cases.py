"""unittest's ``IsolatedAsyncioTestCase`` tests, run on the loop their settings choose.

pytest runs such a test by calling the test case (``TestCase.run``) in its
call phase; the test case makes its own event loop, runs ``asyncSetUp``,
the test method, ``asyncTearDown`` and the async cleanups on it, and closes
it, all inside that one call.  Nothing of pytest-asyncio takes part, so the
plugin reaches the loop through a seam of asyncio's public API:

* **the event loop policy**, on every supported Python, when the class has no
  ``loop_factory`` of its own.  unittest makes the loop with
  ``asyncio.new_event_loop()`` (3.10) or ``asyncio.Runner()`` without a
  factory (3.11-3.13), and both ask the current policy.  For the duration
  of the test case's run only, the policy is a :class:`ChoosingPolicy` that
  makes the test's loop, and hands every other call to the policy it
  replaced: ``set_event_loop`` and ``get_event_loop`` act on the real
  policy exactly as unittest's own calls would, and any other loop (the
  test's own ``asyncio.run``, a thread's loop) is the stock one.
* **the class's ``loop_factory``** (3.13): ``asyncio.Runner`` then never asks
  the policy, so the test case's ``loop_factory`` is set on the instance (it
  is a documented class attribute, read through the instance) for the run.

A project's own choice of loop is never silently overridden, as with its
own pytest-asyncio loop factories: asyncio's stock loop (the default
policy, or a ``loop_factory`` of ``asyncio.EventLoop``,
``asyncio.new_event_loop`` or ``asyncio.SelectorEventLoop``) is replaced by
the loop the settings ask for; any other policy or factory is kept when the
test asks for the real clock on asyncio's loop (it is observed as it is),
and otherwise the test fails with a message naming both ways out.

The whole run of the test case is the observation's call phase (pytest sees
one call).  A cleanup the plugin adds before the test case runs is the
first added, so unittest runs it last, after the test's own cleanups and
before it shuts the loop down: the observation stops there and the leaks
are judged, as the runner's teardown does for pytest-asyncio's tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..clock.loops import LoopFactory, is_stock_asyncio_factory, loop_factory

if TYPE_CHECKING:
    from ..checks.allow_rules import AllowRule
    from .observation import Observation
    from .settings import Effective
    from .state import TestState

#: Why exploration skips a unittest test (the run summary's words).
NOT_EXPLORED = (
    "unittest.IsolatedAsyncioTestCase runs it, and exploration reorders the tasks of "
    "tests pytest-asyncio runs (the virtual clock, tracing, the blocking gate and leak "
    "checks do apply)"
)


def own_loop_factory(case_class: type) -> Any:
    """The class's ``loop_factory`` (3.13), or None: its Runner then asks the policy."""
    if sys.version_info < (3, 13):
        return None
    return getattr(case_class, "loop_factory", None)


def foreign_loop_factory_message(nodeid: str, effective: Effective, factory: object) -> str:
    """The test case's own loop_factory is not asyncio's stock loop, and the
    test asks for a loop asyncspec makes: say so, and the ways out."""
    return (
        f"{nodeid}: asks for {_asked(effective)}, but its class sets loop_factory = "
        f"{_name_of(factory)}, which asyncspec cannot put its clock on (only asyncio's own "
        "loop, asyncio.EventLoop, asyncio.new_event_loop or asyncio.SelectorEventLoop, is "
        "replaced by asyncspec's loop). Choose one: drop loop_factory from the class (or "
        "set it to asyncio.EventLoop); or keep your loop for this class with "
        "@pytest.mark.asyncspec(clock='real') on it."
    )


def foreign_policy_message(nodeid: str, effective: Effective, policy: object) -> str:
    """The event loop policy in force is not asyncio's default one, and the
    test asks for a loop asyncspec makes."""
    return (
        f"{nodeid}: asks for {_asked(effective)}, but the event loop policy in force, "
        f"{_name_of(type(policy))}, makes this test case's loop, and asyncspec cannot put "
        "its clock on it (only asyncio's default policy, whose loop is asyncio's own, is "
        "replaced). Choose one: leave asyncio's default policy in force while the test "
        "runs; or keep your policy's loop with @pytest.mark.asyncspec(clock='real') on the "
        "class or the test (the trace, the blocking gate and leak checks still apply)."
    )


def _asked(effective: Effective) -> str:
    asked = f"clock={effective.clock} ({effective.sources['clock']})"
    if effective.loop != "asyncio":
        asked += f", loop={effective.loop} ({effective.sources['loop']})"
    return asked


def _name_of(thing: object) -> str:
    name = getattr(thing, "__qualname__", None) or repr(thing)
    module = getattr(thing, "__module__", None)
    return f"{module}.{name}" if module else name


def _is_stock_policy(policy: asyncio.AbstractEventLoopPolicy) -> bool:
    return type(policy) is asyncio.DefaultEventLoopPolicy


class ChoosingPolicy(asyncio.AbstractEventLoopPolicy):
    """The event loop policy while one test case runs.

    Its first ``new_event_loop`` on the test's thread makes the test case's
    loop (unittest asks for exactly one); every other call goes to the
    policy it stands in for, so what unittest and the test do to the current
    loop lands where it would without the plugin.
    """

    def __init__(
        self,
        replaced: asyncio.AbstractEventLoopPolicy,
        make: LoopFactory,
        made: Callable[[asyncio.AbstractEventLoop], None],
    ) -> None:
        self.replaced = replaced
        self._make = make
        self._made = made
        self._thread = threading.get_ident()
        self._claimed = False

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        if self._claimed or threading.get_ident() != self._thread:
            # A loop the test makes for itself (asyncio.run in a sync test,
            # a thread's own loop): the stock one, as without the plugin.
            return self.replaced.new_event_loop()
        self._claimed = True
        loop = self._make()
        self._made(loop)
        return loop

    def get_event_loop(self) -> asyncio.AbstractEventLoop:
        return self.replaced.get_event_loop()

    def set_event_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.replaced.set_event_loop(loop)

    # Child watchers (deprecated in 3.12, gone in 3.14) belong to the policy
    # replaced: unittest attaches its loop to them through set_event_loop.
    def get_child_watcher(self) -> Any:
        return self.replaced.get_child_watcher()  # type: ignore[attr-defined,unused-ignore]

    def set_child_watcher(self, watcher: Any) -> None:
        self.replaced.set_child_watcher(watcher)  # type: ignore[attr-defined,unused-ignore]

    def __getattr__(self, name: str) -> Any:
        # What a project's own policy adds beyond asyncio's interface.
        return getattr(self.replaced, name)


class CaseRun:
    """One unittest test's run on the chosen loop: what the seam saw, and
    what the observation concluded when the test case's cleanups were done."""

    __slots__ = ("blocking", "call_passed", "failure", "finished", "leaks", "loop", "observation")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.observation: Observation | None = None
        self.finished = False
        #: The blocking gate's report of the run ("" when it passed).
        self.blocking = ""
        #: The leak report, judged after the test's own cleanups.
        self.leaks = ""
        #: The failure the plugin raised for the call (the blocking gate's).
        self.failure: BaseException | None = None
        #: Whether the call's report passed: a test that failed or was
        #: skipped was cut short, and what it left running says nothing more.
        self.call_passed = False

    def finish(self, unittest_machinery: list[AllowRule] | None) -> None:
        """Stop watching and judge the run, once: while the loop is still up
        (``unittest_machinery`` given), or after it closed, when unittest
        never ran the cleanups (a skipped test: nothing ran on the loop that
        the gate or leaks could speak of)."""
        observation = self.observation
        if self.finished or observation is None:
            return
        self.finished = True
        observation.stop()
        if unittest_machinery is not None:
            self.blocking = observation.blocking_failures("call")
            self.leaks = observation.leaks(unittest_machinery)


def _unittest_machinery() -> list[AllowRule]:
    """unittest's own tasks (Python 3.10 runs every step of the test case
    in one long-lived task of its own) are not the test's leaks."""
    from ..checks.allow_rules import parse_leak_rules

    return parse_leak_rules(["unittest.async_case.*"])


@contextlib.contextmanager
def on_chosen_loop(
    item: pytest.Item,
    state: TestState,
    start_observation: Callable[[asyncio.AbstractEventLoop], Observation | None],
    loop_made: Callable[[asyncio.AbstractEventLoop], None],
) -> Iterator[CaseRun]:
    """Around pytest's call of a unittest test: the seam, for that call only.

    Yields once the seam is in place; the test case runs then.  Not entered
    when the test asks for nothing of the plugin (stock loop, no mode on).
    """
    case = getattr(item, "instance", None)
    effective = state.plan.settings
    stock_pair = (effective.clock, effective.loop) == ("real", "asyncio")
    run = CaseRun()
    machinery = _unittest_machinery()

    def made(loop: asyncio.AbstractEventLoop) -> None:
        run.loop = loop
        loop_made(loop)
        run.observation = start_observation(loop)

    def judge() -> None:
        run.finish(machinery)

    if case is None:
        yield run
        return
    theirs = own_loop_factory(type(case))
    # Added first, so run last: after the test's own cleanups, before the
    # test case shuts its loop down.
    case.addCleanup(judge)
    if theirs is not None:
        make: LoopFactory = theirs
        if not stock_pair:
            if not is_stock_asyncio_factory(theirs):
                # Refused at collection already; a class changed since says so too.
                pytest.fail(
                    foreign_loop_factory_message(item.nodeid, effective, theirs), pytrace=False
                )
            make = loop_factory(effective.clock, effective.loop)

        def factory() -> asyncio.AbstractEventLoop:
            loop = make()
            made(loop)
            return loop

        case.loop_factory = factory
        try:
            yield run
        finally:
            del case.loop_factory
            run.finish(None)
            _close_left_open(run.loop)
        return
    replaced = asyncio.get_event_loop_policy()
    if stock_pair:
        make = replaced.new_event_loop
    elif _is_stock_policy(replaced):
        make = loop_factory(effective.clock, effective.loop)
    else:
        pytest.fail(foreign_policy_message(item.nodeid, effective, replaced), pytrace=False)
    choosing = ChoosingPolicy(replaced, make, made)
    asyncio.set_event_loop_policy(choosing)
    try:
        yield run
    finally:
        # A policy the test set for itself stays, as it would without us.
        if asyncio.get_event_loop_policy() is choosing:
            asyncio.set_event_loop_policy(replaced)
        run.finish(None)
        _close_left_open(run.loop)


def _close_left_open(loop: asyncio.AbstractEventLoop | None) -> None:
    """Shut down a loop the test case could not shut down itself.

    On Python 3.10 unittest runs the whole test case in one task of its own,
    and shuts the loop down only once that task has taken its last order: a
    test that deadlocked (which the virtual clock reports instead of hanging
    for ever, as the stock loop would) keeps it waiting, so unittest's own
    teardown raises the deadlock again and leaves the loop open.  What it
    would have done is done here, so that no loop, socket or task of the
    test outlives it.
    """
    if loop is None or loop.is_closed() or loop.is_running():
        return
    try:
        # The test's own failure is what its report shows, not this one's.
        with contextlib.suppress(Exception):
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        policy = asyncio.get_event_loop_policy()
        with contextlib.suppress(Exception), warnings.catch_warnings():
            # The current loop, read without making one (3.12 warns).
            warnings.simplefilter("ignore", DeprecationWarning)
            if policy.get_event_loop() is loop:
                policy.set_event_loop(None)
        loop.close()
