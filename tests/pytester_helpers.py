"""Helpers shared by the pytester tests of the plugin (tests/test_plugin_*.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# The inner project of a pytester test: as strict as this project's own
# configuration.
STRICT_INI = """\
[pytest]
addopts = --strict-markers
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""
#: For an inner run under pytest-xdist (``-n 2``): pytest-benchmark warns at
#: start-up that xdist disables it, which the inner filterwarnings=error makes
#: an INTERNALERROR; the inner runs benchmark nothing.
NO_BENCHMARK = ("-p", "no:benchmark")
#: The same on the virtual clock.
VIRTUAL_INI = STRICT_INI + "asyncspec_clock = virtual\n"


def output_of(result: pytest.RunResult) -> str:
    """Everything an inner run printed, stdout then stderr."""
    return "\n".join(result.outlines + result.errlines)


def failure_sections(result: pytest.RunResult) -> str:
    """What an inner run printed before its short test summary: the failure
    sections, each report once. With the ``CI`` (or ``BUILD_NUMBER``)
    environment variable set, pytest repeats whole failure messages in the
    short test summary, so counting or unpacking matches over the whole output
    would see each report twice on a CI machine."""
    return output_of(result).split("short test summary info")[0]


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the only line of ``path`` containing ``needle``."""
    numbers = [
        number
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if needle in line
    ]
    assert len(numbers) == 1, (needle, numbers)
    return numbers[0]


def assert_usage_error(result: pytest.RunResult, *patterns: str) -> None:
    """Exit code 4, ``patterns`` on stderr, no test run and no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output_of(result)
    result.stderr.fnmatch_lines(list(patterns))
    text = output_of(result)
    assert "Traceback" not in text
    assert "INTERNALERROR" not in text
    assert "pytest_asyncspec/" not in text
    assert not re.search(r"\d+ (passed|failed|skipped|error)", text), text
