"""The layer contract: which of the package's modules may load which.

Each module is imported alone in a fresh interpreter; what it loads of the
package, and whether it loads pytest, is compared with its layer's rule.  A
layer is a subpackage (docs/architecture.md draws them):

* ``base``, below everything: the top-level modules that read asyncio's
  objects (``introspection``), add exception notes and name things lazily;
* ``clock``: the virtual-clock loop and what it needs (ticks, time patching,
  what is in flight, the threads it watches, the stall rules, loop choice);
* ``tracing``, on the clock: the step log, the task table, the tracer, the
  timeline and trace events;
* ``checks``, on tracing: timing, ordering, output, leaks, hangs, blocking
  detection with its allow rules;
* ``exploration``, on the clock and tracing and beside the checks (neither
  loads the other);
* ``plugin`` on top, loaded by no module below it;
* ``moved``: the old module paths, which load only the base until a name is
  asked for (then they forward to the module's new home).

No module below the plugin loads pytest or pytest-asyncio: the clock, the
tracer, the checks and the explorer run in plain scripts.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest_asyncspec

SUBPACKAGES = ("clock", "tracing", "checks", "exploration", "plugin")
#: The layers of the top-level modules (every other module's layer is its
#: subpackage).
TOP_LEVEL: dict[str, str] = {
    "introspection": "base",
    "notes": "base",
    "_lazy": "base",
    "timing": "moved",
    "step_log": "moved",
    "exploring_loop": "moved",
    "strategies": "moved",
}

#: The layers each layer may load (itself included).
MAY_LOAD: dict[str, frozenset[str]] = {
    "base": frozenset({"base"}),
    "clock": frozenset({"base", "clock"}),
    "tracing": frozenset({"base", "clock", "tracing"}),
    "checks": frozenset({"base", "clock", "tracing", "checks"}),
    "exploration": frozenset({"base", "clock", "tracing", "exploration"}),
    "plugin": frozenset({"base", *SUBPACKAGES}),
    "moved": frozenset({"base", "moved"}),
}


def layer_of(module: str) -> str | None:
    """The layer of ``module`` (a path under the package), or None if it has none."""
    head, dot, _ = module.partition(".")
    if head in SUBPACKAGES:
        return head
    return None if dot else TOP_LEVEL.get(head)


PROBE = """\
import json, sys
import pytest_asyncspec.{module}
print(json.dumps({{
    "package": sorted(
        name.split(".", 1)[1] for name in sys.modules
        if name.startswith("pytest_asyncspec.") and not name.endswith("_c")
    ),
    "pytest": sorted(name for name in ("pytest", "pytest_asyncio") if name in sys.modules),
}}))
"""


def _modules() -> list[str]:
    """Every module and subpackage under the package, by its path there."""
    return sorted(
        info.name.split(".", 1)[1]
        for info in pkgutil.walk_packages(pytest_asyncspec.__path__, "pytest_asyncspec.")
        if not info.name.endswith("_c")
    )


def _loads(module: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_every_module_has_a_layer() -> None:
    """A new top-level module is placed in a layer (this file) before it
    lands; a module in a subpackage is in that subpackage's layer."""
    assert [module for module in _modules() if layer_of(module) is None] == []
    assert sorted(set(TOP_LEVEL) - set(_modules())) == []


def _breaches(module: str, loaded: dict[str, list[str]], layer: str | None = None) -> list[str]:
    """What ``module`` (placed in ``layer``, by default its own) loads
    against its layer's rule."""
    layer = layer or layer_of(module)
    assert layer is not None, module
    breaches = [
        f"{module} ({layer}) loads {other} ({layer_of(other)})"
        for other in loaded["package"]
        if layer_of(other) not in MAY_LOAD[layer]
    ]
    if layer != "plugin" and loaded["pytest"]:
        breaches.append(f"{module} ({layer}) loads {', '.join(loaded['pytest'])}")
    return breaches


def test_each_module_loads_only_its_layer_and_those_below() -> None:
    with ThreadPoolExecutor(4) as pool:
        loads = dict(zip(_modules(), pool.map(_loads, _modules()), strict=True))
    broken = [breach for module, loaded in loads.items() for breach in _breaches(module, loaded)]
    assert broken == []


def test_a_subpackage_loads_nothing_until_a_name_is_asked_for() -> None:
    """Importing a subpackage (to reach one of its modules, or a name of its
    namespace) costs its ``__init__`` and the lazy-naming helper, no more:
    start-up stays as it was before the package had subpackages."""
    with ThreadPoolExecutor(4) as pool:
        loads = dict(zip(SUBPACKAGES, pool.map(_loads, SUBPACKAGES), strict=True))
    assert {package: loaded["package"] for package, loaded in loads.items()} == {
        package: ["_lazy", package] for package in SUBPACKAGES
    }
    # Even the plugin's: its hooks load pytest, its package does not.
    assert {package: loaded["pytest"] for package, loaded in loads.items()} == {
        package: [] for package in SUBPACKAGES
    }


def test_the_checker_catches_a_breach() -> None:
    """Negative control: the plugin's settings, were they in the clock layer,
    would breach it twice over (pytest, and exploration's option parsers)."""
    breaches = _breaches("plugin.settings", _loads("plugin.settings"), layer="clock")
    assert "plugin.settings (clock) loads exploration.options (exploration)" in breaches
    assert "plugin.settings (clock) loads pytest" in breaches
