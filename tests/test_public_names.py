"""The package's public names: one table (``_HOMES``, name -> defining
module), ``__all__`` derived from it, and the typed re-exports that type
checkers read kept in step with it here."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest_asyncspec

INIT = Path(pytest_asyncspec.__file__)


def _typed_reexports() -> dict[str, str]:
    """Name -> module of each ``from .module import Name as Name`` under
    ``if TYPE_CHECKING:`` in the package's ``__init__.py``."""
    tree = ast.parse(INIT.read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
                for alias in statement.names:
                    # Without "as Name", strict type checkers do not re-export it.
                    assert alias.asname == alias.name, alias.name
                    found[alias.name] = str(statement.module)
    return found


def test_all_is_the_table() -> None:
    homes = pytest_asyncspec._HOMES
    assert pytest_asyncspec.__all__ == sorted(homes)


def test_the_typed_reexports_are_the_table() -> None:
    assert _typed_reexports() == pytest_asyncspec._HOMES


def test_every_public_name_is_where_the_table_says() -> None:
    for name, home in pytest_asyncspec._HOMES.items():
        module = importlib.import_module(f"pytest_asyncspec.{home}")
        assert getattr(pytest_asyncspec, name) is getattr(module, name), name


def test_the_trace_fixture_answers_every_query_of_a_trace_typed_alike() -> None:
    """TraceView (the asyncspec_trace fixture) spells out each query of Trace
    with the same signature, and the protocol the assertions take names the
    same set: none can gain a query the others lack."""
    import inspect

    from pytest_asyncspec.observation import TraceView
    from pytest_asyncspec.trace import Trace, TraceQueries

    def queries(cls: type) -> dict[str, str]:
        found = {}
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            function = member.fget if isinstance(member, property) else member
            if callable(function):
                found[name] = str(inspect.signature(function))
        return found

    trace = queries(Trace)
    assert len(trace) == 13
    assert queries(TraceView) == {
        **trace,
        "output": "(self) -> 'TimedOutput'",
        "phase_of": "(self, which: 'int | str') -> 'str'",
        "snapshot": "(self) -> 'Trace'",
    }
    assert queries(TraceQueries) == trace
