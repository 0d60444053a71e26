"""pytest with the plugin installed starts nearly as fast as without it: the
plugin module loads only what every run needs (benchmarks/test_bench_startup.py
measures the time; this guards the cause)."""

from __future__ import annotations

import json
import subprocess
import sys

# Loaded only when a test traces, checks blocking, explores or writes a page.
HEAVY = (
    "pytest_asyncspec.trace",
    "pytest_asyncspec.step_log",
    "pytest_asyncspec.observation",
    "pytest_asyncspec.blocking",
    "pytest_asyncspec.timeline",
    "pytest_asyncspec.exploration",
    "pytest_asyncspec.exploring_loop",
    "pytest_asyncspec.html_report",
    "pytest_asyncspec.suspension",
    "importlib.metadata",
)


def test_loading_the_plugin_leaves_the_heavy_modules_unloaded() -> None:
    probe = (
        "import json, sys\n"
        "import pytest, pytest_asyncio.plugin\n"
        "before = set(sys.modules)\n"
        "import pytest_asyncspec.plugin\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert "pytest_asyncspec.plugin" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_public_names_still_import_on_first_use() -> None:
    import pytest_asyncspec

    for name in pytest_asyncspec.__all__:
        assert getattr(pytest_asyncspec, name) is not None, name
