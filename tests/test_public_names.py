"""The package's public names, in two tiers: the top level (what tests use)
and the namespaces ``tracing``, ``exploration`` and ``clock``.  Each has one
table (``_HOMES``, name -> defining module), ``__all__`` derived from it, and
typed re-exports kept in step with it here; what moved in 0.2 still answers,
with a warning that names its new place."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

import pytest_asyncspec
import pytest_asyncspec.clock
import pytest_asyncspec.exploration
import pytest_asyncspec.tracing

NAMESPACES: dict[str, ModuleType] = {
    "pytest_asyncspec": pytest_asyncspec,
    "pytest_asyncspec.tracing": pytest_asyncspec.tracing,
    "pytest_asyncspec.exploration": pytest_asyncspec.exploration,
    "pytest_asyncspec.clock": pytest_asyncspec.clock,
}
SPACES = pytest.mark.parametrize("space", list(NAMESPACES))


def _typed_reexports(space: str) -> dict[str, str]:
    """Name -> module (under the package) of each ``from .module import Name
    as Name`` under ``if TYPE_CHECKING:`` in a namespace's ``__init__.py``."""
    tree = ast.parse(Path(str(NAMESPACES[space].__file__)).read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
                module = importlib.util.resolve_name(
                    "." * statement.level + str(statement.module), space
                )
                for alias in statement.names:
                    # Without "as Name", strict type checkers do not re-export it.
                    assert alias.asname == alias.name, alias.name
                    found[alias.name] = module.removeprefix("pytest_asyncspec.")
    return found


@SPACES
def test_all_is_the_table(space: str) -> None:
    namespace = NAMESPACES[space]
    assert namespace.__all__ == sorted(namespace._HOMES)


@SPACES
def test_the_typed_reexports_are_the_table(space: str) -> None:
    assert _typed_reexports(space) == NAMESPACES[space]._HOMES


@SPACES
def test_every_public_name_is_where_the_table_says(space: str) -> None:
    namespace = NAMESPACES[space]
    for name, home in namespace._HOMES.items():
        module = importlib.import_module(f"pytest_asyncspec.{home}")
        assert getattr(namespace, name) is getattr(module, name), name


def test_each_public_name_has_one_namespace() -> None:
    seen: dict[str, str] = {}
    for space, namespace in NAMESPACES.items():
        for name in namespace._HOMES:
            assert name not in seen, f"{name} is in {seen.get(name)} and {space}"
            seen[name] = space


def test_an_unknown_name_is_an_attribute_error_that_names_it() -> None:
    with pytest.raises(
        AttributeError, match=re.escape("'pytest_asyncspec.tracing' has no attribute 'Nope'")
    ):
        _ = pytest_asyncspec.tracing.Nope


# -- what moved in 0.2 -------------------------------------------------------------

MOVED_NAMES = [
    (space, name, new)
    for space, namespace in NAMESPACES.items()
    for name, new in getattr(namespace, "_MOVED", {}).items()
]


@pytest.mark.parametrize(("space", "name", "new"), MOVED_NAMES)
def test_a_moved_name_still_answers_with_a_warning_naming_its_new_place(
    space: str, name: str, new: str
) -> None:
    home = f"pytest_asyncspec.{new}" if new else "pytest_asyncspec"
    assert name in NAMESPACES[home]._HOMES  # it moved somewhere real
    with pytest.warns(DeprecationWarning, match=rf"{space}\.{name} is now {home}\.{name}") as seen:
        value = getattr(NAMESPACES[space], name)
    assert value is getattr(NAMESPACES[home], name)
    assert seen[0].filename == __file__  # the warning points at the line that asked


#: Module paths the docs showed before 0.2 -> a name each offered, and where
#: the warning sends the reader.
MOVED_PATHS = {
    "pytest_asyncspec.timing": ("cpu_wait", "pytest_asyncspec"),
    "pytest_asyncspec.step_log": ("ACCELERATED", "pytest_asyncspec.tracing"),
    "pytest_asyncspec.exploring_loop": ("ExploringLoop", "pytest_asyncspec.exploration"),
    "pytest_asyncspec.strategies": ("FifoChooser", "pytest_asyncspec.exploration.strategies"),
}


@pytest.mark.parametrize("old", list(MOVED_PATHS))
def test_a_moved_module_path_still_imports_with_a_warning(old: str) -> None:
    name, home = MOVED_PATHS[old]
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        f"    from {old} import {name}\n"
        f"import {home} as home\n"
        f"assert {name} is getattr(home, {name!r})\n"
        "print(seen[0].category.__name__, '|', seen[0].message, '|', seen[0].filename)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    category, message, filename = (part.strip() for part in done.stdout.split("|"))
    assert category == "DeprecationWarning"
    assert message.startswith(f"{old} is deprecated; import {name} from {home};")
    assert filename == "<string>"  # the importing line, not the package


def test_the_current_names_raise_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for space, name, _ in [(s, n, 0) for s, ns in NAMESPACES.items() for n in ns.__all__]:
            getattr(NAMESPACES[space], name)


def test_the_trace_fixture_answers_every_query_of_a_trace_typed_alike() -> None:
    """TraceView (the asyncspec_trace fixture) spells out each query of Trace
    with the same signature, and the protocol the assertions take names the
    same set: none can gain a query the others lack."""
    import inspect

    from pytest_asyncspec.plugin.observation import TraceView
    from pytest_asyncspec.tracing.trace import Trace, TraceQueries

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
