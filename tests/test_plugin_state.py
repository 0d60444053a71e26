"""What the plugin keeps: each test's plan, decided once at collection and
frozen, in one state object per test; the run's shared objects in one state
object per run; each under a single stash key."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pytester_helpers import STRICT_INI

import pytest_asyncspec
from pytest_asyncspec.plugin import planning
from pytest_asyncspec.plugin.settings import Effective
from pytest_asyncspec.plugin.state import TestPlan

PACKAGE = Path(pytest_asyncspec.__file__).parent


def _stash_keys_made() -> dict[str, int]:
    """Module (under the package) -> how many ``StashKey()`` it makes."""
    made: dict[str, int] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "StashKey":
                name = str(path.relative_to(PACKAGE))
                made[name] = made.get(name, 0) + 1
    return made


def test_one_key_per_test_and_one_per_run_all_in_the_state_module() -> None:
    assert _stash_keys_made() == {"plugin/state.py": 2}


def test_a_plan_cannot_change_once_made() -> None:
    plan = TestPlan(Effective(clock="virtual", loop="asyncio", sources={}))
    with pytest.raises(AttributeError, match="decided at collection"):
        plan.settings = plan.settings


def test_a_test_s_settings_are_resolved_at_collection_and_never_while_it_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting the suite resolves as many settings as running it does:
    fixtures, hooks and reports read the plan, they do not resolve again."""
    resolved: list[str] = []
    resolve = planning.resolve

    def counting(config: pytest.Config, marked: dict[str, object]) -> Effective:
        resolved.append(repr(marked))
        return resolve(config, marked)

    monkeypatch.setattr(planning, "resolve", counting)
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_planned="""
        import asyncio

        import pytest


        @pytest.fixture
        def settings_twice(asyncspec_settings, asyncspec_clock):
            return asyncspec_settings


        @pytest.mark.asyncspec(clock="virtual", trace=True)
        @pytest.mark.parametrize("n", [1, 2])
        async def test_marked(n, asyncspec_settings, settings_twice, asyncspec_trace):
            await asyncio.sleep(n)
            assert asyncspec_settings is settings_twice
            assert asyncspec_settings.clock == "virtual"


        async def test_plain(asyncspec_settings):
            assert asyncspec_settings.clock == "real"
        """
    )
    pytester.runpytest_inprocess("--co", "-q").assert_outcomes()
    collected = list(resolved)
    resolved.clear()
    pytester.runpytest_inprocess().assert_outcomes(passed=3)
    assert resolved == collected
    assert collected  # the marked test's settings, and the run's


def test_a_test_cannot_change_the_settings_other_tests_share(pytester: pytest.Pytester) -> None:
    """Tests with no marker share one plan: the settings the fixture gives
    are read-only, so one test cannot change what the next runs with."""
    pytester.makeini(STRICT_INI)
    pytester.makepyfile(
        test_shared="""
        import pytest


        async def test_tries_to_change(asyncspec_settings):
            with pytest.raises(AttributeError, match="read-only"):
                asyncspec_settings.clock = "virtual"
            with pytest.raises(TypeError):
                asyncspec_settings.sources["clock"] = "marker"


        async def test_next(asyncspec_settings):
            assert asyncspec_settings.clock == "real"
            assert asyncspec_settings.sources["clock"] == "default"
        """
    )
    pytester.runpytest_inprocess("-p", "no:randomly").assert_outcomes(passed=2)
