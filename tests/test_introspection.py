"""The one home for reading asyncio's objects and whose code a frame runs."""

from __future__ import annotations

import asyncio
import json
import os
import sysconfig

import pytest_asyncspec
from pytest_asyncspec import introspection
from pytest_asyncspec.introspection import (
    ASYNCIO_DIR,
    PACKAGE_DIR,
    is_library,
    is_stdlib_or_plugin,
    live_coro,
)


def test_asyncio_and_package_directories_end_with_a_separator() -> None:
    """So that a sibling directory (``asyncio_extras/``) never matches."""
    assert os.path.dirname(asyncio.__file__) + os.sep == ASYNCIO_DIR
    assert asyncio.tasks.__file__.startswith(ASYNCIO_DIR)
    assert not (ASYNCIO_DIR.rstrip(os.sep) + "_extras" + os.sep + "x.py").startswith(ASYNCIO_DIR)
    assert os.path.dirname(os.path.abspath(pytest_asyncspec.__file__)) + os.sep == PACKAGE_DIR


def test_whose_code_a_file_is_answers_each_question() -> None:
    """The gate's question (library: stdlib, any installed package, this
    plugin) and the hang report's (stdlib or this plugin: installed packages
    count as the user's, even under the stdlib tree)."""
    stdlib = json.__file__
    installed = os.path.join(sysconfig.get_paths()["stdlib"], "site-packages", "lib", "x.py")
    elsewhere_installed = "/opt/tool/venv/lib/python3.11/site-packages/lib/x.py"
    plugin = introspection.__file__
    user = "/home/me/project/app.py"

    assert [is_library(f) for f in (stdlib, installed, elsewhere_installed, plugin, user)] == [
        True,
        True,
        True,
        True,
        False,
    ]
    assert [is_stdlib_or_plugin(f) for f in (stdlib, installed, plugin, user)] == [
        True,
        False,
        True,
        False,
    ]


def test_live_coro_never_asks_a_done_task() -> None:
    async def main() -> tuple[object, object]:
        async def body() -> None:
            await asyncio.sleep(0)

        task = asyncio.create_task(body())
        running = live_coro(task)
        await task
        return running, live_coro(task)

    running, done = asyncio.run(main())
    assert getattr(running, "__qualname__", "").endswith("body")
    assert done is None


def test_awaitable_frames_follow_the_chain_to_the_innermost_await() -> None:
    """From the task's coroutine through each coroutine it awaits, down to
    Event.wait; a done task awaits nothing."""
    from pytest_asyncspec.introspection import awaitable_frames

    async def inner(event: asyncio.Event) -> None:
        await event.wait()

    async def outer(event: asyncio.Event) -> None:
        await inner(event)

    async def main() -> tuple[list[str], list[str]]:
        event = asyncio.Event()
        task = asyncio.create_task(outer(event))
        await asyncio.sleep(0)
        waiting = [frame.f_code.co_name for frame in awaitable_frames(live_coro(task))]
        event.set()
        await task
        return waiting, [frame.f_code.co_name for frame in awaitable_frames(live_coro(task))]

    waiting, done = asyncio.run(main())
    assert waiting == ["outer", "inner", "wait"]
    assert done == []
