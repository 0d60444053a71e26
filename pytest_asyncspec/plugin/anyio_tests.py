"""Tests that anyio's pytest plugin runs, on its asyncio backend.

anyio runs a test (and its async fixtures) on a *test runner* that it keeps
open while anything holds a lease on it (``anyio.pytest_plugin.get_runner``):
the first lease makes the runner, and with it the loop, from the backend
options of the ``anyio_backend`` fixture (anyio 4 takes a ``loop_factory``
there); the last one closes it, cancelling what is left.  The plugin takes
the first lease of each such test itself, through a function-scoped fixture
set up before any other of the test's fixtures (:data:`RUNNER_FIXTURE`):

* its backend options get the loop the test's settings ask for, so the
  runner (made by this lease, or by the wider-scoped async fixture that
  comes next) runs on it;
* the observation starts on that loop before any async fixture runs, and
  ends when the fixture is torn down -- after every other function-scoped
  fixture, and before the runner can close and cancel what the test left
  running (which the leak check must still see).

The ``anyio_backend`` fixture's value is left as the project gave it.  The
trio backend is left alone: a test on it runs without the modes, and the
run summary says so.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from ..clock.loops import VIRTUAL_CLOCKS, is_stock_asyncio_factory, loop_factory
from .settings import Effective

if TYPE_CHECKING:
    from ..checks.allow_rules import AllowRule

#: The fixture through which the plugin holds anyio's runner for a test.
RUNNER_FIXTURE = "_asyncspec_anyio_runner"
#: anyio's fixture naming the backend (a name, or a name and its options).
BACKEND_FIXTURE = "anyio_backend"
#: Where a test on anyio's runner keeps its loop among the live loops.
LOOP_SCOPE = "anyio"
#: The coroutine of the task in which anyio's runner awaits every test and
#: fixture: anyio's own machinery, never a leak of the test's.
RUNNER_TASK = "anyio._backends._asyncio.TestRunner._run_tests_and_fixtures"


def outside_reason(backend: str) -> str:
    """Why a test anyio runs on ``backend`` gets none of the modes."""
    if backend == "asyncio":
        # Only when anyio's plugin is not the one running it after all.
        return "anyio's pytest plugin runs it"
    return (
        f"anyio runs it on the {backend} backend, and asyncspec acts on asyncio loops only "
        "(a test parametrized over backends gets the modes in its asyncio variant)"
    )


def is_anyio_test(item: pytest.Item) -> bool:
    """Whether anyio's pytest plugin runs ``item``: a coroutine test that
    uses the ``anyio_backend`` fixture, with anyio's plugin active."""
    if BACKEND_FIXTURE not in getattr(item, "fixturenames", ()):
        return False
    if not inspect.iscoroutinefunction(getattr(item, "obj", None)):
        return False
    return item.config.pluginmanager.has_plugin("anyio")


def backend_at_collection(item: pytest.Item) -> str | None:
    """The backend's name when collection already knows it (anyio's own
    ``anyio_backend`` fixture is parametrized with it); None when the
    project's fixture decides at setup."""
    callspec = getattr(item, "callspec", None)
    backend = None if callspec is None else callspec.params.get(BACKEND_FIXTURE)
    if isinstance(backend, str):
        return backend
    if isinstance(backend, tuple) and backend and isinstance(backend[0], str):
        return backend[0]
    return None


def take_the_runner_first(item: pytest.Item) -> None:
    """Make :data:`RUNNER_FIXTURE` the first fixture ``item`` sets up."""
    names: list[str] = item.fixturenames  # type: ignore[attr-defined]
    if RUNNER_FIXTURE not in names:
        names.insert(0, RUNNER_FIXTURE)


def split_backend(backend: object, nodeid: str) -> tuple[str, dict[str, Any]]:
    """The backend's name and options, as anyio reads the fixture's value."""
    if isinstance(backend, str):
        return backend, {}
    if (
        isinstance(backend, tuple)
        and len(backend) == 2
        and isinstance(backend[0], str)
        and isinstance(backend[1], dict)
    ):
        return backend[0], dict(backend[1])
    pytest.fail(
        f"{nodeid}: the anyio_backend fixture gave {backend!r}; anyio takes a backend "
        "name ('asyncio') or a (name, options) pair such as ('asyncio', {'debug': True})",
        pytrace=False,
    )


def options_for(options: dict[str, Any], settings: Effective, nodeid: str) -> dict[str, Any]:
    """The asyncio backend's ``options`` with the loop ``settings`` ask for.

    On the real clock and the stock loop the project's options stand as
    they are.  Otherwise the loop factory is ours; a project's own factory of
    asyncio's stock loop gives way to it (as in the pytest-asyncio hook),
    and any other loop of the project's is a clear failure, never a silent
    win of one over the other.
    """
    clock, loop = settings.clock, settings.loop
    if (clock, loop) == ("real", "asyncio"):
        return options
    theirs = options.get("loop_factory")
    if options.get("use_uvloop"):
        theirs = theirs or "uvloop (use_uvloop=True)"
    if theirs is not None and not is_stock_asyncio_factory(theirs):
        pytest.fail(
            f"{nodeid}: asyncspec runs this test on clock={clock}, loop={loop} "
            f"(clock from {settings.sources['clock']}), and the anyio_backend fixture asks "
            f"for a loop of its own ({theirs!r}): drop loop_factory / use_uvloop from the "
            "fixture's options for the tests that should run on asyncspec's loop, or keep "
            "the project's loop with @pytest.mark.asyncspec(clock='real')",
            pytrace=False,
        )
    chosen = {key: value for key, value in options.items() if key != "use_uvloop"}
    chosen["loop_factory"] = loop_factory(clock, loop)
    return chosen


def loop_fits(loop: object, settings: Effective) -> bool:
    """Whether ``loop`` runs on the clock and loop ``settings`` ask for."""
    from ..clock.virtual_loop import VirtualClockLoop

    if isinstance(loop, VirtualClockLoop):
        return settings.clock == ("manual" if loop.manual else "virtual")
    if settings.clock in VIRTUAL_CLOCKS:
        return False
    if settings.loop == "uvloop":
        return type(loop).__module__.partition(".")[0] == "uvloop"
    # The real clock on the loop the project's own backend options make.
    return True


def shared_runner_message(nodeid: str, loop: object, settings: Effective) -> str:
    """Why a test cannot run on the loop of a runner that is already up."""
    return (
        f"{nodeid}: asyncspec runs this test on clock={settings.clock}, "
        f"loop={settings.loop}, and anyio's test runner is already up on another loop "
        f"({type(loop).__module__}.{type(loop).__qualname__}), kept open by a wider-scoped "
        "async fixture or an earlier test: anyio runs every test and async fixture of one "
        "runner on the same loop. Ask for the clock for all the tests that share the "
        "runner (pytestmark in the module, or the ini file), or give this test no "
        "wider-scoped async fixture"
    )


@contextmanager
def held_runner(name: str, options: dict[str, Any]) -> Iterator[object]:
    """Hold a lease on anyio's test runner for ``name`` and ``options``
    (making it if no lease is held yet); gives the runner's loop."""
    from anyio.pytest_plugin import get_runner

    with get_runner(name, options) as runner:
        get_loop: Callable[[], object] | None = getattr(runner, "get_loop", None)
        if get_loop is None:
            raise RuntimeError(  # anyio's asyncio runner has had it since 4.0
                "anyio's asyncio test runner has no get_loop(): this anyio version is "
                "not supported by pytest-asyncspec (anyio 4 is)"
            )
        yield get_loop()


@functools.cache
def machinery_rules() -> list[AllowRule]:
    """The leak rule that keeps anyio's runner task out of every report."""
    from ..checks.allow_rules import parse_leak_rules

    return parse_leak_rules([RUNNER_TASK])


def body_on_runner(
    item: pytest.Function, test: Callable[..., Coroutine[Any, Any, Any]]
) -> Callable[..., None]:
    """``test`` as a synchronous call that runs it to its end on anyio's
    runner (exploration calls it once per schedule).

    The runner's task, in which anyio awaits every test and fixture, is
    started first if no async fixture started it: made during the first
    schedule, it would count as that schedule's, and be cancelled with
    what the schedule left running.
    """
    from anyio.pytest_plugin import get_runner

    name, options = split_backend(item.funcargs[BACKEND_FIXTURE], item.nodeid)
    with get_runner(name, options) as runner:
        runner.run_fixture(_nothing, {})

    def run_body(**kwargs: Any) -> None:
        with get_runner(name, options) as runner:
            runner.run_test(test, kwargs)

    return run_body


async def _nothing() -> None:
    """What the runner's task is started with."""
