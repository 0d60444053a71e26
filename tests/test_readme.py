"""The README's example runs, as a user would paste it, and passes.

The README is what a new user copies first; this keeps it from rotting.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytester_helpers import output_of

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_example_passes_in_a_fresh_project(pytester: pytest.Pytester) -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) == 1, "the README shows one example; test every one you add"
    # A user's project: pytest-asyncio in its default (strict) mode, no
    # asyncspec settings in the ini file.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_readme_example=blocks[0])
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["test_readme_example.py::test_gathered_sleeps_overlap: 50 schedules, *"]
    )
    assert "blocked the event loop" not in output_of(result)


def test_the_readme_states_the_two_setup_commands() -> None:
    """.ci/run runs these two commands; the README must show them verbatim."""
    text = README.read_text()
    assert '```\npython -m pip install -e ".[test]"\npytest\n```' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'python -m pip install -e ".[test]"\npytest\n' in ci
