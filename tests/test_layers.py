"""The layer contract: which of the package's modules may load which.

Each module is imported alone in a fresh interpreter; what it loads of the
package, and whether it loads pytest, is compared with its layer's rule:

* introspection, below everything: reading asyncio's objects, ticks, notes;
* the clock: the virtual-clock loop and what it needs (time patching, what
  is in flight, the threads it watches, the stall rules, loop factories);
* tracing, on the clock: the step log, the task table, the tracer, the
  timeline and trace events;
* the checks, on tracing: timing, ordering, output, leaks, hangs, blocking
  detection with its allow rules;
* exploration, on the clock and tracing and beside the checks (neither
  loads the other);
* the pytest plugin on top, loaded by no module below it.

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

LAYERS: dict[str, frozenset[str]] = {
    "introspection": frozenset({"introspection", "waiting", "ticks", "procfs", "notes"}),
    "clock": frozenset(
        {"clock", "time_patch", "datetime_patch", "inflight", "threads", "stall", "loops"}
    ),
    "tracing": frozenset({"step_log", "task_table", "trace", "timeline", "trace_events"}),
    "checks": frozenset(
        {
            "timing",
            "ordering",
            "output",
            "leaks",
            "hang",
            "hang_watch",
            "blocking",
            "blocking_sites",
            "blocking_sampler",
            "blocking_sleeps",
            "blocking_settle",
            "blocking_groups",
            "allow_rules",
            "collector",
        }
    ),
    "exploration": frozenset(
        {
            "deviation",
            "exploration_options",
            "exploring_loop",
            "strategies",
            "exploration",
            "replay_token",
            "suspension",
        }
    ),
    "plugin": frozenset(
        {
            "plugin",
            "settings",
            "observation",
            "explored_tests",
            "failure_store",
            "fixture_cycle",
            "claims",
            "run_summary",
            "report_fields",
            "report_files",
            "html_page",
            "html_assets",
            "html_report",
            "outside_modes",
            "replay_command",
        }
    ),
}

#: The layers each layer may load (itself included).
MAY_LOAD: dict[str, frozenset[str]] = {
    "introspection": frozenset({"introspection"}),
    "clock": frozenset({"introspection", "clock"}),
    "tracing": frozenset({"introspection", "clock", "tracing"}),
    "checks": frozenset({"introspection", "clock", "tracing", "checks"}),
    "exploration": frozenset({"introspection", "clock", "tracing", "exploration"}),
    "plugin": frozenset(LAYERS),
}

LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}

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
    return sorted(
        info.name
        for info in pkgutil.iter_modules(pytest_asyncspec.__path__)
        if not info.name.startswith("_")
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
    """A new module is placed in a layer (this file) before it lands."""
    assert sorted(set(_modules()) - set(LAYER_OF)) == []
    assert sorted(set(LAYER_OF) - set(_modules())) == []


def _breaches(module: str, layer: str, loaded: dict[str, list[str]]) -> list[str]:
    """What ``module``, placed in ``layer``, loads against its layer's rule."""
    breaches = [
        f"{module} ({layer}) loads {other} ({LAYER_OF.get(other)})"
        for other in loaded["package"]
        if LAYER_OF.get(other, "plugin") not in MAY_LOAD[layer]
    ]
    if layer != "plugin" and loaded["pytest"]:
        breaches.append(f"{module} ({layer}) loads {', '.join(loaded['pytest'])}")
    return breaches


def test_each_module_loads_only_its_layer_and_those_below() -> None:
    with ThreadPoolExecutor(4) as pool:
        loads = dict(zip(_modules(), pool.map(_loads, _modules()), strict=True))
    broken = [
        breach
        for module, loaded in loads.items()
        for breach in _breaches(module, LAYER_OF[module], loaded)
    ]
    assert broken == []


def test_the_checker_catches_a_breach() -> None:
    """Negative control: the plugin's settings, were they in the clock layer,
    would breach it twice over (pytest, and exploration's option parsers)."""
    breaches = _breaches("settings", "clock", _loads("settings"))
    assert "settings (clock) loads exploration_options (exploration)" in breaches
    assert "settings (clock) loads pytest" in breaches
