"""pytest entry point: options, markers, fixtures and the loop-factory hook.

Thin by design: settings live in :mod:`.settings`, loops in :mod:`.loops`,
the clock in :mod:`.clock`, timing checks in :mod:`.timing`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from .loops import LoopFactory, UnsupportedLoopError, loop_factory
from .settings import (
    CLAIM_HELP,
    MARKER_HELP,
    Effective,
    add_options,
    effective_for,
    effective_global,
    validate_config,
)
from .timing import LoopClock

SETTINGS_KEY = pytest.StashKey[Effective]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CLAIM_HELP)
    validate_config(config)


def pytest_report_header(config: pytest.Config) -> str:
    effective = effective_global(config)
    return (
        f"asyncspec: clock={effective.clock} ({effective.sources['clock']}), "
        f"loop={effective.loop} ({effective.sources['loop']})"
    )


@pytest.hookimpl(trylast=True, optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """Give pytest-asyncio the loop this test asked for (trylast: a user's own
    hook implementation takes precedence)."""
    try:
        effective = effective_for(config, item)
        factory = loop_factory(effective.clock, effective.loop)
    except (pytest.UsageError, UnsupportedLoopError):
        # pytest-asyncio calls this hook mid-collection, where an exception
        # becomes a collection traceback.  The same check runs again in
        # pytest_collection_modifyitems and reports a clean usage error there.
        effective = effective_global(config)
        factory = loop_factory(effective.clock, effective.loop)
    return {f"{effective.loop}-{effective.clock}": factory}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Validates every marker, sync tests included, before anything runs.
    for item in items:
        effective = effective_for(config, item)
        try:
            loop_factory(effective.clock, effective.loop)
        except UnsupportedLoopError as error:
            raise pytest.UsageError(f"{item.nodeid}: {error}") from None
        item.stash[SETTINGS_KEY] = effective


@pytest.fixture
def asyncspec_settings(request: pytest.FixtureRequest) -> Effective:
    """The clock and loop this test runs with, and where each choice came from."""
    node: pytest.Item = request.node
    if SETTINGS_KEY in node.stash:
        return node.stash[SETTINGS_KEY]
    return effective_for(request.config, node)


@pytest.fixture
def asyncspec_clock() -> LoopClock:
    """The running loop's clock, t = 0 at its first reading in the test.

    Exact to the tick under the virtual clock; under the real clock its
    assertions accept :data:`~pytest_asyncspec.timing.REAL_CLOCK_TOLERANCE`.
    """
    return LoopClock()
