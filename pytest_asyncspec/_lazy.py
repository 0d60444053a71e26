"""Namespaces whose names are imported on first use (PEP 562).

The package's public namespaces (the top level, ``tracing``, ``exploration``,
``clock``) name what they offer in a table and load a module only when one
of its names is asked for, so that pytest starts as fast with the plugin
installed as without it.  Names and module paths that moved keep answering
for one release, with a :class:`DeprecationWarning` that says where they went.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

ROOT = "pytest_asyncspec"
#: The first release without the old names and paths.
REMOVED_IN = "0.3"


def namespace(
    package: str, homes: Mapping[str, str], moved: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of the namespace ``package``.

    ``homes`` maps each name to the module (under the root package) that
    defines it; ``moved`` maps a name the namespace used to offer to the
    namespace that offers it now.
    """
    scope = sys.modules[package].__dict__
    gone = moved or {}

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is not None:
            value = getattr(importlib.import_module(f"{ROOT}.{home}"), name)
            scope[name] = value  # later lookups skip this function
            return value
        if name in gone:
            new = f"{ROOT}.{gone[name]}" if gone[name] else ROOT
            _warn(f"{package}.{name} is now {new}.{name}")
            return getattr(importlib.import_module(new), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*scope, *homes})

    return __getattr__, __dir__


def forwarding(old: str, new: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a module path that moved: every name of the
    module now at ``new`` (under the root package) still answers, with a
    warning that names the public home of the name, where it has one."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # import machinery and tools probing
            raise AttributeError(name)
        value = getattr(importlib.import_module(f"{ROOT}.{new}"), name)
        _warn(f"{old} is deprecated; import {name} from {_public_home(name) or f'{ROOT}.{new}'}")
        return value

    return __getattr__


def _public_home(name: str) -> str | None:
    for space in (ROOT, f"{ROOT}.tracing", f"{ROOT}.exploration", f"{ROOT}.clock"):
        if name in getattr(importlib.import_module(space), "_HOMES", {}):
            return space
    return None


def _warn(what: str) -> None:
    # stacklevel 3: past this function and the __getattr__ to the line that
    # asked for the name (an import statement or an attribute read).
    warnings.warn(
        f"{what}; the old name works until pytest-asyncspec {REMOVED_IN}",
        DeprecationWarning,
        stacklevel=3,
    )
