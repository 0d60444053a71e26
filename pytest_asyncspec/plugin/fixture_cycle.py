"""An explored test's function-scoped fixtures, set up and torn down once per schedule.

Each schedule is a full run of the test: its function-scoped fixtures (sync
and async, plain and generator) are set up before the schedule and torn down
after the body, under the schedule, before the explorer cancels what is left.
Both go through pytest's own machinery -- the session's setup state and the
item's fixture request -- so caching, finalizers, parametrisation and
``request.addfinalizer`` behave as in a normal run.

What stays across schedules is the event loop: pytest-asyncio's runner
fixture (and what it depends on) is set up once, by pytest, and torn down
once, by pytest, after the last schedule.  Exploration reorders the callbacks
of one loop; a fresh loop per schedule would be a fresh clock, tracer and
task numbering too.

pytest's setup state only ever sees what it would see in a normal run: the
item is torn down here with every exception caught (a fixture's teardown that
raises ``CancelledError``, a ``BaseException``, would otherwise leave the
stack half torn down, and the next module's first test would error with
"previous item was not torn down properly"); the error is then the
schedule's failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ..notes import add_note

#: The fixtures a test's loop comes from: pytest-asyncio's runner fixtures,
#: one per loop scope, and the plugin's hold on anyio's runner (see
#: .anyio_tests).
_RUNNER = re.compile(
    r"_(function|class|module|package|session)_scoped_runner|_asyncspec_anyio_runner"
)
#: The name pytest-asyncio's runner fixtures end with (their value runs coroutines).
_PYTEST_ASYNCIO_RUNNER = "_scoped_runner"


class FixtureCycle:
    """Sets ``item``'s function-scoped fixtures up and tears them down per run.

    The first :meth:`set_up` finds them set up by pytest's setup phase; the
    last :meth:`tear_down` leaves the runner's finalizers for pytest's
    teardown phase (:meth:`close` hands them back).
    """

    def __init__(self, item: pytest.Function, loop: asyncio.AbstractEventLoop) -> None:
        self.item = item
        self.loop = loop
        self._state: Any = item.session._setupstate
        self._set_up = True  # by pytest's setup phase
        self._first = True
        # The finalizers of the loop's fixtures, between a tear-down and the
        # next set-up, and the fixtures whose finalizers may pile up.
        self._kept: list[Callable[[], object]] = []
        self._watched = {defs[-1] for defs in item._fixtureinfo.name2fixturedefs.values() if defs}
        # What pytest's phases put in the item's stash once per test, a
        # fixture's teardown may take out (tmp_path takes its setup report):
        # every run's teardown must find it, as the one of a normal run does.
        self._stashed = dict(item.stash._storage)
        self._context = contextvars.copy_context()
        self._runner = next((name for name in item.fixturenames if _RUNNER.fullmatch(name)), None)

    # -- the explorer's RunCycle ---------------------------------------------

    def baseline(self) -> set[asyncio.Task[Any]]:
        """The tasks a run must not cancel: those from before its set-up (a
        loop shared with earlier tests keeps theirs)."""
        if not self._first:
            return asyncio.all_tasks(self.loop)
        self._first = False
        if self._runner == "_function_scoped_runner":
            return set()  # the test's own loop: every task on it is the test's
        # pytest set the first run up before we could look: what a fixture
        # started and its teardown leaves running stays, as it would on a
        # shared loop without exploration.
        return asyncio.all_tasks(self.loop)

    def set_up(self) -> None:
        """Set up the item's fixtures as pytest's setup phase does (fresh
        request and arguments), unless they already are."""
        if self._set_up:
            return
        self._set_up = True
        item = self.item
        item._initrequest()
        try:
            self._state.setup(item)
        finally:
            # The loop's fixtures were not torn down: their finalizers stay
            # due, first in, last out, as pytest registered them.
            entry = self._state.stack.get(item)
            if entry is not None:
                entry[0][1:1] = self._kept
            self._kept = []
        caplog = item.funcargs.get("caplog")
        if isinstance(caplog, pytest.LogCaptureFixture):
            # Its records live on the item's call-phase handler, which one
            # call keeps: a fresh run of the test starts with none.
            caplog.clear()

    def tear_down(self) -> None:
        """Tear the item's fixtures down, all of them, whatever they raise;
        then raise the first error (noting the others)."""
        if not self._set_up:
            return
        item = self.item
        finalizers, _ = self._state.stack[item]
        loop_defs = _loop_fixture_defs(finalizers)
        if all(_is_loop_or_noop(item, f, loop_defs) for f in finalizers):
            # Nothing but the loop is set up (no fixture, no finalizer): a
            # tear-down and set-up would change nothing but cost time.
            return
        self._set_up = False
        del self._state.stack[item]
        self._watched.update(loop_defs)
        errors: list[BaseException] = []
        finished: set[Any] = set()
        kept: list[Callable[[], object]] = []
        while finalizers:
            finalizer = finalizers.pop()
            fixturedef = _fixturedef_of(finalizer)
            if fixturedef is not None and fixturedef in loop_defs:
                kept.append(finalizer)
                continue
            if fixturedef is not None:
                finished.add(fixturedef)
            try:
                finalizer()
            except BaseException as error:  # all of them: see the module docstring
                errors.append(error)
        for key, value in self._stashed.items():
            item.stash._storage.setdefault(key, value)
        kept.reverse()
        self._kept = kept
        self._forget_finished(finished)
        for stop in errors:
            if isinstance(stop, (KeyboardInterrupt, SystemExit)):
                raise stop  # the user stops the run: that wins
        if errors:
            first = errors[0]
            if len(errors) > 1:
                others = "; ".join(f"{type(e).__name__}: {e}" for e in errors[1:])
                add_note(first, f"while tearing down {item.nodeid}, also: {others}")
            raise first

    def _forget_finished(self, finished: set[Any]) -> None:
        # pytest-asyncio registers each async fixture's finish on the runner
        # fixture, and pytest each fixture's on those it requested: drop the
        # ones just finished, or they pile up, one per schedule, until the
        # runner ends.
        for fixturedef in self._watched:
            fixturedef._finalizers[:] = [
                finalizer
                for finalizer in fixturedef._finalizers
                if _fixturedef_of(finalizer) not in finished
            ]

    def close(self) -> None:
        """After the last run: hand what is still set up back to pytest, whose
        teardown phase ends it (the loop's fixtures, always)."""
        if not self._set_up:
            self._state.stack[self.item] = (self._kept, None)
            self._kept = []
            self._set_up = True

    # -- the body ----------------------------------------------------------------

    def begin_body(self) -> dict[str, Any]:
        """Start a run of the body: a fresh copy of the context (taken now,
        after this run's fixtures set theirs) and the test function's arguments."""
        self._context = contextvars.copy_context()
        item = self.item
        return {name: item.funcargs[name] for name in item._fixtureinfo.argnames}

    @contextmanager
    def fresh_context_per_run(self) -> Iterator[None]:
        """Run the test's coroutine in the context :meth:`begin_body` copied:
        pytest-asyncio copies one per test, shared by every call of the
        coroutine in it (each example of a Hypothesis test, say)."""
        item = self.item
        target, attribute = getattr(item, "_synchronization_target_attr", (item, "obj"))
        synchronized = getattr(target, attribute)
        original = getattr(synchronized, "__wrapped__", None)
        if (
            original is None
            or self._runner is None
            or not self._runner.endswith(_PYTEST_ASYNCIO_RUNNER)
        ):
            # Not pytest-asyncio's wrapper (anyio's runner awaits every test
            # and fixture in one task, whose context they share): run it as it is.
            yield
            return

        @functools.wraps(original)
        def run_in_fresh_context(*args: Any, **kwargs: Any) -> None:
            runner: Any = item.funcargs[self._runner]  # type: ignore[index]
            runner.run(original(*args, **kwargs), context=self._context)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(target, attribute, run_in_fresh_context)
            yield


def _fixturedef_of(finalizer: object) -> Any:
    """The fixture a finalizer finishes (pytest registers ``partial(finish)``), else None."""
    if isinstance(finalizer, functools.partial):
        owner = getattr(finalizer.func, "__self__", None)
        if isinstance(owner, pytest.FixtureDef):
            return owner
    return None


def _is_loop_or_noop(item: pytest.Item, finalizer: object, loop_defs: set[Any]) -> bool:
    """Whether ``finalizer`` ends a loop fixture, or is the item's own
    ``teardown`` left as pytest's no-op."""
    if _fixturedef_of(finalizer) in loop_defs:
        return True
    return getattr(finalizer, "__func__", None) is pytest.Item.teardown and (
        getattr(finalizer, "__self__", None) is item
    )


def _loop_fixture_defs(finalizers: list[Callable[[], object]]) -> set[Any]:
    """Among the fixtures ``finalizers`` finish, those the test's loop comes
    from: pytest-asyncio's runner fixtures and what they request, transitively."""
    by_name = {}
    for finalizer in finalizers:
        fixturedef = _fixturedef_of(finalizer)
        if fixturedef is not None:
            by_name[fixturedef.argname] = fixturedef
    wanted = [name for name in by_name if _RUNNER.fullmatch(name)]
    found: set[Any] = set()
    while wanted:
        fixturedef = by_name.get(wanted.pop())
        if fixturedef is None or fixturedef in found:
            continue
        found.add(fixturedef)
        wanted.extend(fixturedef.argnames)
    return found
