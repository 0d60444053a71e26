"""The virtual clock under pytest-asyncio's shared loops, and the loop-factory hook.

When several tests (and their async fixtures) share one module- or
session-scoped loop, virtual time is one continuous timeline: what a test
sleeps is visible to the next, and neither ``loop.time()`` nor the patched
``time`` functions ever go back.  Each inner run appends what it sees to a
JSON-lines file; the outer test checks the timeline.

A project's own ``pytest_asyncio_loop_factories`` hook keeps deciding the
loop of tests on the real clock; for a test that asks for the virtual clock,
its stock asyncio factory becomes the virtual-clock loop, and any other
factory is a usage error that names the hook (never a silent real-time run).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

BASE_INI = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# ``record(label)`` appends the running loop's view of time to timeline.jsonl.
RECORDER = """\
from __future__ import annotations

import asyncio
import json
import pathlib
import time

from pytest_asyncspec import VirtualClockLoop

TIMELINE = pathlib.Path(__file__).parent / "timeline.jsonl"


def record(label: str) -> None:
    loop = asyncio.get_running_loop()
    entry = {
        "label": label,
        "loop_id": id(loop),
        "virtual": isinstance(loop, VirtualClockLoop),
        "loop_time": loop.time(),
        "monotonic": time.monotonic(),
        "perf_counter": time.perf_counter(),
        "time": time.time(),
    }
    with TIMELINE.open("a") as file:
        file.write(json.dumps(entry) + "\\n")
"""

CLOCKS = ("loop_time", "monotonic", "perf_counter", "time")


def make_project(pytester: pytest.Pytester, *ini_lines: str) -> None:
    pytester.makeini(BASE_INI + "".join(f"{line}\n" for line in ini_lines))
    pytester.makepyfile(recorder=RECORDER)


def timeline(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "timeline.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def by_label(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["label"]: entry for entry in entries}


def assert_never_decreases(entries: list[dict[str, Any]]) -> None:
    """Every clock reading is at least the one recorded before it."""
    for clock in CLOCKS:
        for before, after in itertools.pairwise(entries):
            assert after[clock] >= before[clock], (
                f"{clock} went back from {before['label']} ({before[clock]}) "
                f"to {after['label']} ({after[clock]})"
            )


# -- module scope ---------------------------------------------------------------


def test_module_scoped_loop_keeps_one_timeline(pytester: pytest.Pytester) -> None:
    """Tests and a module-scoped async fixture sharing a module loop see one
    virtual timeline: the fixture's 3 s and the first test's 10 s are visible
    in the second test, and no clock ever goes back, teardown included."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_module_loop="""
        from __future__ import annotations

        import asyncio

        import pytest
        import pytest_asyncio

        from recorder import record

        pytestmark = pytest.mark.asyncio(loop_scope="module")


        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def shared():
            record("fixture-setup")
            await asyncio.sleep(3)
            record("fixture-ready")
            yield asyncio.get_running_loop()
            await asyncio.sleep(1)
            record("fixture-teardown")


        async def test_one(shared):
            assert asyncio.get_running_loop() is shared
            record("test_one-start")
            await asyncio.sleep(10)
            record("test_one-end")


        async def test_two(shared):
            assert asyncio.get_running_loop() is shared
            record("test_two-start")
            await asyncio.sleep(0.5)
            record("test_two-end")


        async def test_three_without_fixture():
            record("test_three")
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)
    entries = timeline(pytester)
    assert [entry["label"] for entry in entries] == [
        "fixture-setup",
        "fixture-ready",
        "test_one-start",
        "test_one-end",
        "test_two-start",
        "test_two-end",
        "test_three",
        "fixture-teardown",
    ]
    assert all(entry["virtual"] for entry in entries)
    assert len({entry["loop_id"] for entry in entries}) == 1
    assert_never_decreases(entries)
    seen = by_label(entries)
    assert seen["fixture-ready"]["loop_time"] == seen["fixture-setup"]["loop_time"] + 3
    assert seen["test_one-end"]["loop_time"] == seen["test_one-start"]["loop_time"] + 10
    # The virtual clock jumps, so the only time that passes between tests is
    # what the tests slept: the 10 s of test one are all there in test two.
    assert seen["test_two-start"]["loop_time"] >= seen["fixture-setup"]["loop_time"] + 13
    assert seen["test_two-start"]["monotonic"] >= seen["fixture-setup"]["monotonic"] + 13
    assert seen["fixture-teardown"]["loop_time"] >= seen["test_two-end"]["loop_time"] + 1


def test_module_marker_without_async_fixture_shares_the_clock(pytester: pytest.Pytester) -> None:
    """Tests marked ``loop_scope="module"`` share the clock even without a
    shared fixture, while tests in another module start their own loop."""
    make_project(pytester, "asyncspec_clock = virtual")
    test_source = """
        from __future__ import annotations

        import asyncio

        import pytest

        from recorder import record

        pytestmark = pytest.mark.asyncio(loop_scope="module")


        async def test_first():
            record("{module}-first")
            await asyncio.sleep(10)


        async def test_second():
            record("{module}-second")
            await asyncio.sleep(10)


        async def test_third():
            record("{module}-third")
        """
    pytester.makepyfile(
        test_a=test_source.replace("{module}", "a"), test_b=test_source.replace("{module}", "b")
    )
    pytester.runpytest().assert_outcomes(passed=6)
    seen = by_label(timeline(pytester))
    for module in ("a", "b"):
        first, second, third = (seen[f"{module}-{n}"] for n in ("first", "second", "third"))
        assert first["loop_id"] == second["loop_id"] == third["loop_id"]
        assert_never_decreases([first, second, third])
        assert second["loop_time"] - first["loop_time"] == 10
        assert third["loop_time"] - first["loop_time"] == 20
        assert third["monotonic"] - first["monotonic"] == 20
    # Module b got a fresh virtual loop whose clock starts again at zero.
    assert seen["b-first"]["loop_time"] == 0


def test_function_scoped_tests_in_between_do_not_disturb_a_module_loop(
    pytester: pytest.Pytester,
) -> None:
    """A function-scoped test running between two tests on a module loop uses
    its own loop, and the module loop's timeline resumes where it stopped."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_mixed="""
        from __future__ import annotations

        import asyncio
        import time

        import pytest

        from recorder import record


        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_one():
            record("module-one")
            await asyncio.sleep(10)
            record("module-one-end")


        async def test_function_scoped():
            record("function")
            await asyncio.sleep(100)
            record("function-end")


        def test_sync_in_between():
            time.sleep(0.01)


        @pytest.mark.asyncio(loop_scope="module")
        async def test_module_two():
            record("module-two")
        """
    )
    pytester.runpytest().assert_outcomes(passed=4)
    entries = timeline(pytester)
    seen = by_label(entries)
    module_entries = [seen["module-one"], seen["module-one-end"], seen["module-two"]]
    assert len({entry["loop_id"] for entry in module_entries}) == 1
    assert seen["function"]["loop_id"] != seen["module-one"]["loop_id"]
    assert_never_decreases(module_entries)
    assert seen["module-two"]["loop_time"] == seen["module-one"]["loop_time"] + 10
    assert seen["module-two"]["monotonic"] == seen["module-one"]["monotonic"] + 10
    assert seen["function-end"]["loop_time"] - seen["function"]["loop_time"] == 100


# -- session scope -------------------------------------------------------------


def test_session_scoped_loop_keeps_one_timeline_across_modules(
    pytester: pytest.Pytester,
) -> None:
    """A session-scoped async fixture and tests in two modules on the session
    loop share one virtual timeline: a 10 s sleep in the first module is
    visible in the second, and nothing ever goes back."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makeconftest(
        """
        from __future__ import annotations

        import asyncio

        import pytest_asyncio

        from recorder import record


        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def service():
            record("service-setup")
            await asyncio.sleep(2)
            yield asyncio.get_running_loop()
            record("service-teardown")
        """
    )
    module = """
        from __future__ import annotations

        import asyncio

        import pytest

        from recorder import record

        pytestmark = pytest.mark.asyncio(loop_scope="session")


        async def test_first(service):
            assert asyncio.get_running_loop() is service
            record("{name}-first")
            await asyncio.sleep(10)


        async def test_second(service):
            record("{name}-second")
        """
    pytester.makepyfile(test_a=module.replace("{name}", "a"), test_b=module.replace("{name}", "b"))
    pytester.runpytest().assert_outcomes(passed=4)
    entries = timeline(pytester)
    assert [entry["label"] for entry in entries] == [
        "service-setup",
        "a-first",
        "a-second",
        "b-first",
        "b-second",
        "service-teardown",
    ]
    assert all(entry["virtual"] for entry in entries)
    assert len({entry["loop_id"] for entry in entries}) == 1
    assert_never_decreases(entries)
    seen = by_label(entries)
    assert seen["a-first"]["loop_time"] == seen["service-setup"]["loop_time"] + 2
    assert seen["a-second"]["loop_time"] == seen["a-first"]["loop_time"] + 10
    assert seen["b-first"]["loop_time"] >= seen["a-first"]["loop_time"] + 10
    assert seen["b-second"]["loop_time"] == seen["b-first"]["loop_time"] + 10
    assert seen["b-second"]["monotonic"] == seen["service-setup"]["monotonic"] + 22


def test_session_loop_fixture_with_function_scoped_tests(pytester: pytest.Pytester) -> None:
    """A session-scoped fixture on the session loop keeps its own timeline even
    when the tests using it run on function-scoped loops in between."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makeconftest(
        """
        from __future__ import annotations

        import asyncio

        import pytest_asyncio

        from recorder import record


        @pytest_asyncio.fixture(scope="session", loop_scope="session")
        async def ticker():
            record("ticker-setup")
            await asyncio.sleep(5)
            record("ticker-ready")
            yield
            record("ticker-teardown")
        """
    )
    pytester.makepyfile(
        test_fn="""
        from __future__ import annotations

        import asyncio

        from recorder import record


        async def test_one(ticker):
            record("one")
            await asyncio.sleep(50)


        async def test_two(ticker):
            record("two")
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
    seen = by_label(timeline(pytester))
    session = [seen["ticker-setup"], seen["ticker-ready"], seen["ticker-teardown"]]
    assert len({entry["loop_id"] for entry in session}) == 1
    assert_never_decreases(session)
    assert seen["ticker-ready"]["loop_time"] == seen["ticker-setup"]["loop_time"] + 5
    # Each function-scoped test has a fresh loop whose clock starts at zero.
    assert seen["one"]["loop_id"] != seen["ticker-setup"]["loop_id"]
    assert seen["one"]["loop_time"] == 0
    assert seen["two"]["loop_time"] == 0


def test_time_module_is_real_again_between_tests_on_a_shared_loop(
    pytester: pytest.Pytester,
) -> None:
    """Between tests that share a virtual loop, a sync test sees the real
    ``time`` functions again (the patch is active only while the loop runs)."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_between="""
        from __future__ import annotations

        import asyncio
        import time
        import types

        import pytest

        shared_loop = pytest.mark.asyncio(loop_scope="module")


        @shared_loop
        async def test_async_before():
            assert not isinstance(time.monotonic, types.BuiltinFunctionType)
            await asyncio.sleep(1000)


        def test_sync_between():
            assert isinstance(time.monotonic, types.BuiltinFunctionType)
            assert time.monotonic() > 0


        @shared_loop
        async def test_async_after():
            assert asyncio.get_running_loop().time() == 1000
            assert time.monotonic() == 1000
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


# -- the loop-factory hook --------------------------------------------------------

CUSTOM_LOOP_CONFTEST = """
from __future__ import annotations

import asyncio


class CustomLoop(asyncio.SelectorEventLoop):
    pass


def pytest_asyncio_loop_factories(config, item):
    {body}
"""


def test_user_hook_with_its_own_loop_class_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """A project hook that gives every test its own loop class, in a suite
    that asks for the virtual clock, stops the run naming the hook, the
    factory and both ways out, instead of running the suite in real time."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makeconftest(CUSTOM_LOOP_CONFTEST.format(body='return {"custom": CustomLoop}'))
    pytester.makepyfile(
        test_custom="""
        async def test_runs_somewhere():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*test_custom.py::test_runs_somewhere: asks for clock=virtual (ini), but the "
            "pytest_asyncio_loop_factories hook in *conftest.py gives it the loop factory "
            "conftest.CustomLoop, which asyncspec cannot put its clock on*return None from "
            "your hook*@pytest.mark.asyncspec(clock='real')*"
        ]
    )


def test_user_hook_keeps_its_loop_for_a_real_clock_test(pytester: pytest.Pytester) -> None:
    """The way out the error names: a test marked for the real clock runs on
    the project's loop, the others on the virtual clock through ``None``."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makeconftest(
        CUSTOM_LOOP_CONFTEST.format(
            body='return {"custom": CustomLoop} if item.get_closest_marker("asyncspec") else None'
        )
    )
    pytester.makepyfile(
        test_custom="""
        from __future__ import annotations

        import asyncio

        import pytest

        from conftest import CustomLoop
        from pytest_asyncspec import VirtualClockLoop


        @pytest.mark.asyncspec(clock="real")
        async def test_runs_on_custom_loop():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, CustomLoop), type(loop).__mro__
            assert not isinstance(loop, VirtualClockLoop)


        async def test_runs_on_the_virtual_clock():
            await asyncio.sleep(3600)
            assert asyncio.get_running_loop().time() == 3600
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


@pytest.mark.parametrize(
    "factory",
    [
        "asyncio.new_event_loop",
        "asyncio.SelectorEventLoop",
        "asyncio.DefaultEventLoopPolicy().new_event_loop",
    ],
)
def test_user_hook_with_the_stock_loop_gets_the_virtual_clock(
    pytester: pytest.Pytester, factory: str
) -> None:
    """A project hook offering asyncio's own loop (often beside uvloop) gets the
    virtual-clock loop for tests that ask for it, under the hook's own name;
    a factory we cannot recognise as stock (a bound method of a policy) is
    named in the usage error instead.  (One factory: pytest-asyncio hides its
    name from the test id.)"""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makeconftest(CUSTOM_LOOP_CONFTEST.format(body=f'return {{"stock": {factory}}}'))
    pytester.makepyfile(
        test_stock="""
        import asyncio


        async def test_an_hour_passes_at_once():
            await asyncio.sleep(3600)
            assert asyncio.get_running_loop().time() == 3600
        """
    )
    result = pytester.runpytest("-v")
    if "Policy" in factory:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*gives it the loop factory*new_event_loop*"])
    else:
        result.assert_outcomes(passed=1)


def test_loop_factories_marker_selects_our_factory_by_name(pytester: pytest.Pytester) -> None:
    """``@pytest.mark.asyncio(loop_factories=[...])`` can name the factory the
    plugin offers (``asyncio-virtual``); an unknown name is skipped by
    pytest-asyncio and lists ours as available."""
    make_project(pytester, "asyncspec_clock = virtual")
    pytester.makepyfile(
        test_named="""
        from __future__ import annotations

        import asyncio

        import pytest

        from pytest_asyncspec import VirtualClockLoop


        @pytest.mark.asyncio(loop_factories=["asyncio-virtual"])
        async def test_named():
            assert isinstance(asyncio.get_running_loop(), VirtualClockLoop)


        @pytest.mark.asyncio(loop_factories=["nope"])
        async def test_unknown():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*Loop factory 'nope' is not available*asyncio-virtual*"])
