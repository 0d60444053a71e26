"""docs/reference.md lists everything a user can set, mark, request or import,
with the defaults the code really has.

Each test reads one kind of thing from the code (or from pytest's own
``--help`` and ``--fixtures``) and checks the reference against it, both
ways where the reference has a closed list: an option added, renamed or
given a new default without the reference following fails here.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytester_helpers import STRICT_INI, output_of

import pytest_asyncspec
import pytest_asyncspec.clock
import pytest_asyncspec.exploration
import pytest_asyncspec.tracing
from pytest_asyncspec.checks.timing import LoopClock
from pytest_asyncspec.plugin.observation import TraceView
from pytest_asyncspec.plugin.settings import (
    ALLOW_BLOCKING_INI,
    ALLOW_LEAKS_INI,
    MARKER_KEYWORDS,
    SETTINGS,
)
from pytest_asyncspec.tracing.trace import Trace

TRACE_QUERIES = "`Trace` queries (also on `asyncspec_trace`)"
REFERENCE = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()


def section(title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}$", REFERENCE, re.M)
    assert match, f"docs/reference.md has no section {title!r}"
    body = REFERENCE[match.end() :]
    end = re.search(rf"^#{{1,{len(match.group(1))}}} ", body, re.M)
    return body[: end.start()] if end else body


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header row


# -- settings ----------------------------------------------------------------------


def test_every_setting_has_a_row_with_its_flag_ini_key_keyword_and_default() -> None:
    rows = {row[0]: row for row in table_rows(section("Settings"))}
    for setting in SETTINGS:
        row = rows.get(f"`{setting.flag}`")
        assert row is not None, f"no row for {setting.flag}"
        assert row[1] == f"`{setting.ini}`", row
        assert row[2] == (f"`{setting.name}`" if setting.per_test else "—"), row
        if setting.default:
            assert row[4].startswith(f"`{setting.default}`"), (setting.name, row[4])
        else:
            assert row[4] == "none", (setting.name, row[4])
    allow = rows["`--asyncspec-allow-blocking` (repeatable)"]
    assert allow[1].startswith(f"`{ALLOW_BLOCKING_INI}`")
    allow_leaks = rows["`--asyncspec-allow-leaks` (repeatable)"]
    assert allow_leaks[1].startswith(f"`{ALLOW_LEAKS_INI}`")
    # The two allow-lists are the rows beyond the settings.
    assert len(rows) == len(SETTINGS) + 2, "a row names no setting"


def test_every_flag_and_ini_key_pytest_shows_is_in_the_reference(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(STRICT_INI)
    text = output_of(pytester.runpytest("--help"))
    flags = set(re.findall(r"--asyncspec-[a-z-]+", text))
    ini_keys = set(re.findall(r"^ +(asyncspec_[a-z_]+) ", text, re.M))
    # The settings and the two allow-lists.
    assert len(flags) == len(SETTINGS) + 2
    assert len(ini_keys) == len(SETTINGS) + 2
    for name in sorted(flags | ini_keys):
        assert f"`{name}`" in REFERENCE, f"{name} is missing from docs/reference.md"


def test_the_marker_signature_lists_every_keyword() -> None:
    (line,) = [line for line in section("Marker").splitlines() if "@pytest.mark.asyncspec(" in line]
    documented = re.findall(r"(\w+)=\.\.\.", line)
    assert documented == list(MARKER_KEYWORDS)


# -- fixtures ----------------------------------------------------------------------


def test_the_fixture_table_lists_every_fixture_of_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeini(STRICT_INI)
    text = output_of(pytester.runpytest("--fixtures"))
    ours = text.split("fixtures defined from pytest_asyncspec.plugin.hooks", 1)[1]
    ours = ours.split("-- fixtures defined from", 1)[0]
    fixtures = set(re.findall(r"^(asyncspec_\w+)", ours, re.M))
    rows = table_rows(section("Fixtures").split("###")[0])
    assert {row[0].strip("`") for row in rows} == fixtures


def test_asyncspec_settings_fields_are_the_ones_the_reference_names() -> None:
    from pytest_asyncspec.plugin.settings import Effective

    (row,) = [row for row in table_rows(section("Fixtures")) if row[0] == "`asyncspec_settings`"]
    assert set(re.findall(r"`\.(\w+)`", row[2])) == set(Effective.__slots__)


# -- signatures --------------------------------------------------------------------


def documented_signature(name: str, text: str) -> list[str] | None:
    """The parameters ``name(...)`` shows in ``text`` (None when it is not shown called)."""
    match = re.search(rf"`{re.escape(name)}\((.*?)\)`", text)
    if match is None:
        return None
    inside = match.group(1)
    return [part.strip() for part in inside.split(",")] if inside else []


def shown(default: Any) -> str | None:
    """How the reference writes a literal default; None for any other object."""
    if default is None or isinstance(default, (bool, int, float)):
        return repr(default)
    if isinstance(default, str):
        return json.dumps(default)
    if default == ():
        return "()"
    return None


def real_signature(function: Callable[..., Any]) -> list[str]:
    """The parameters as the reference writes them: ``a``, ``*``, ``b=1``, ``*args``."""
    words: list[str] = []
    keyword_only_marked = False
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            words.append(f"*{parameter.name}")
            keyword_only_marked = True
            continue
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only_marked:
            words.append("*")
            keyword_only_marked = True
        if parameter.default is inspect.Parameter.empty:
            words.append(parameter.name)
        else:
            literal = shown(parameter.default)
            words.append(f"{parameter.name}={literal}" if literal else f"{parameter.name}=")
    return words


def assert_signature_matches(name: str, function: Callable[..., Any], text: str) -> None:
    documented = documented_signature(name, text)
    assert documented is not None, f"{name} is not shown with its parameters"
    expected = real_signature(function)
    assert len(documented) == len(expected), f"{name}: reference {documented}, code {expected}"
    for doc, real in zip(documented, expected, strict=True):
        # A default that is not a literal (a constant, a function) is shown by name.
        if real.endswith("="):
            assert doc.startswith(real), f"{name}: reference {doc!r}, code {real!r}"
        else:
            assert doc == real, f"{name}: reference {doc!r}, code {real!r}"


#: Each public namespace and the reference section that lists its names.
NAMESPACES = {
    "pytest_asyncspec": pytest_asyncspec,
    "pytest_asyncspec.tracing": pytest_asyncspec.tracing,
    "pytest_asyncspec.exploration": pytest_asyncspec.exploration,
    "pytest_asyncspec.clock": pytest_asyncspec.clock,
}


def public_names() -> list[tuple[str, str, Any]]:
    """(namespace, name, object) of every public name."""
    return [
        (space, name, getattr(module, name))
        for space, module in NAMESPACES.items()
        for name in module.__all__
    ]


def api(space: str) -> str:
    """The reference's section of one namespace (its subsections included)."""
    return section(f"`{space}`")


def test_every_public_name_is_in_its_namespace_s_section() -> None:
    for space, name, _ in public_names():
        text = api(space)
        assert f"`{name}`" in text or f"`{name}(" in text, f"{space}.{name} is missing"


@pytest.mark.parametrize(
    ("space", "name"),
    [(space, name) for space, name, value in public_names() if inspect.isfunction(value)],
)
def test_every_public_function_is_shown_with_its_parameters_and_defaults(
    space: str, name: str
) -> None:
    assert_signature_matches(name, getattr(NAMESPACES[space], name), api(space))


def constructed_classes() -> list[tuple[str, str]]:
    """The public classes the reference shows called: users construct these."""
    return [
        (space, name)
        for space, name, value in public_names()
        if inspect.isclass(value) and f"`{name}(" in api(space)
    ]


def test_the_classes_users_construct_are_shown_called() -> None:
    assert {"VirtualClockLoop", "LoopClock", "Tolerance", "Tracer", "Explorer"} <= {
        name for _, name in constructed_classes()
    }


@pytest.mark.parametrize(("space", "name"), constructed_classes())
def test_every_constructed_class_is_shown_with_its_parameters_and_defaults(
    space: str, name: str
) -> None:
    cls = getattr(NAMESPACES[space], name)
    assert_signature_matches(name, cls.__init__, api(space))


def public_methods(cls: type) -> list[str]:
    return [
        name
        for name, member in vars(cls).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    ]


@pytest.mark.parametrize(
    ("cls", "title"),
    [(LoopClock, "`LoopClock` (what `asyncspec_clock` gives)"), (Trace, TRACE_QUERIES)],
    ids=["LoopClock", "Trace"],
)
def test_every_method_of_what_the_fixtures_give_is_documented(cls: type, title: str) -> None:
    text = section(title)
    for name in public_methods(cls):
        member = vars(cls)[name]
        if isinstance(member, property):
            assert f"`{name}`" in text, f"{cls.__name__}.{name} is missing"
        else:
            assert_signature_matches(name, member, text)


def test_the_trace_fixture_forwards_every_documented_trace_query() -> None:
    # asyncspec_trace forwards attribute access to the Trace: what the
    # reference promises on the fixture is what Trace has.
    queries = re.findall(r"^\| `(\w+)[`(]", section(TRACE_QUERIES), re.M)
    assert queries
    assert set(queries) <= set(public_methods(Trace))
    assert {"output", "snapshot"} <= set(public_methods(TraceView))
