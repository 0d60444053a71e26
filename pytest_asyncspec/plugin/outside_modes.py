"""Async tests that the modes cannot reach, and why.

Every mode (the virtual clock, the gate, the trace, leak checks, exploration)
acts through the asyncio loop a test runs on: pytest-asyncio's, anyio's
runner's on its asyncio backend (see :mod:`.anyio_tests`), or the one
unittest's ``IsolatedAsyncioTestCase`` makes, which the plugin chooses too
(see :mod:`.unittest_cases`; only exploration does not reach those tests,
and the run summary names them among the unexplored).  An async test that
some other runner drives (anyio on its trio backend, pytest-trio and
aiohttp's pytest plugin run coroutine tests themselves) gets none of them,
while the header says what the run asked for.
Rather than let a mode silently do nothing, collection names such tests and
the run summary counts them by reason.
"""

from __future__ import annotations

import inspect
import unittest

import pytest

#: Plugins whose pytest_pyfunc_call is not the runner of a coroutine test
#: found here: pytest's own, pytest-asyncio's, ours, and the runners that
#: only take tests marked for them (recognised by their markers instead).
_NOT_RUNNERS = frozenset({"python", "asyncio", "asyncspec", "anyio", "trio"})


def why_outside(item: pytest.Item) -> str | None:
    """Why ``item``, a test pytest-asyncio does not run, is nevertheless an
    async test (and so one the modes were meant for); None for a sync test."""
    parent = getattr(item, "parent", None)
    case = getattr(parent, "obj", None)
    function = getattr(item, "obj", None)
    if inspect.isclass(case) and issubclass(case, unittest.IsolatedAsyncioTestCase):
        # Its test case's loop is the one the settings choose.
        return None
    if not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)):
        return None
    markers = {mark.name for mark in item.iter_markers()}
    if "anyio_backend" in getattr(item, "fixturenames", ()):
        from .anyio_tests import backend_at_collection, outside_reason

        return outside_reason(backend_at_collection(item) or "asyncio")
    if "anyio" in markers:
        return "anyio's pytest plugin runs it"
    if "trio" in markers:
        return "pytest-trio runs it"
    runner = _other_runner(item)
    if runner is not None:
        return f"the pytest plugin {runner} runs it"
    return STRICT_MODE


#: Why pytest-asyncio leaves an unmarked async test alone in its strict mode.
STRICT_MODE = (
    "strict mode: pytest-asyncio runs only tests marked @pytest.mark.asyncio, and no other "
    "plugin runs this one"
)


def _other_runner(item: pytest.Item) -> str | None:
    """The plugin other than pytest's and pytest-asyncio's whose
    pytest_pyfunc_call would run the coroutine (aiohttp's, for one)."""
    manager = item.config.pluginmanager
    for impl in reversed(manager.hook.pytest_pyfunc_call.get_hookimpls()):
        name = manager.get_name(impl.plugin) or ""
        if name in _NOT_RUNNERS or name.startswith("_pytest") or impl.hookwrapper or impl.wrapper:
            continue
        return name.rsplit("/", 1)[-1]
    return None


def summary_lines(reasons: dict[str, list[str]], modes: str) -> list[str]:
    """The run summary's account of tests that ran outside the modes."""
    count = sum(len(nodeids) for nodeids in reasons.values())
    tests = "async test" if count == 1 else "async tests"
    lines = [
        f"{count} {tests} ran without {modes}: the modes act on the asyncio loops of "
        "pytest-asyncio, of anyio's asyncio backend and of unittest's "
        "IsolatedAsyncioTestCase, and these ran elsewhere"
    ]
    for reason, nodeids in sorted(reasons.items(), key=lambda entry: -len(entry[1])):
        shown = ", ".join(nodeids[:3]) + (
            f", and {len(nodeids) - 3} more" if len(nodeids) > 3 else ""
        )
        lines.append(f"  {len(nodeids)}: {reason}: {shown}")
    return lines
