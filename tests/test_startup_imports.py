"""pytest with the plugin installed starts as fast as without it: loading the
plugin, and collecting a suite that does not use it, load only the few small
modules every run needs (benchmarks/test_bench_startup.py measures the time;
this guards the cause)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: What every run loads: the entry point, its settings table (with the
#: parsers of exploration's values), the planning of each test and the
#: state kept for it, the loop choices and the names of report fields.  Everything else (claims,
#: exploration, tracing, blocking checks, the HTML page, replay tokens)
#: loads when a test or an option asks for it.
EVERY_RUN = {
    "pytest_asyncspec",
    # The namespaces on the way (their __init__ files import nothing but
    # the lazy-naming helper: tests/test_layers.py).
    "pytest_asyncspec._lazy",
    "pytest_asyncspec.plugin",
    "pytest_asyncspec.exploration",
    "pytest_asyncspec.clock",
    "pytest_asyncspec.plugin.hooks",
    "pytest_asyncspec.plugin.settings",
    # Split out of the entry point: each test's plan, decided at collection,
    # and the objects the plugin keeps per test and per run.
    "pytest_asyncspec.plugin.planning",
    "pytest_asyncspec.plugin.state",
    # The settings table's parsers of exploration's values (no pytest).
    "pytest_asyncspec.exploration.options",
    "pytest_asyncspec.clock.loops",
    # The one parser of durations the settings' parsers share (math only).
    "pytest_asyncspec.clock.ticks",
    "pytest_asyncspec.plugin.report_fields",
    "pytest_asyncspec.plugin.run_summary",
}


def loaded_by(code: str, cwd: Path | None = None) -> set[str]:
    probe = (
        "import json, sys\n"
        "import pytest, pytest_asyncio.plugin\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "new = set(sys.modules) - before\n"
        "print(json.dumps(sorted(m for m in new if m.startswith('pytest_asyncspec'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_loading_the_plugin_loads_only_what_every_run_needs() -> None:
    assert loaded_by("import pytest_asyncspec.plugin.hooks") == EVERY_RUN


def test_collecting_a_suite_that_does_not_use_the_plugin_loads_nothing_more(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_app.py").write_text(
        "import asyncio\n\n\n"
        "async def test_sleeps():\n    await asyncio.sleep(0)\n\n\n"
        "def test_sync():\n    assert True\n"
    )
    run = "pytest.main(['--co', '-q', '-p', 'no:cacheprovider'])"
    assert loaded_by(run, cwd=tmp_path) == EVERY_RUN


def test_collecting_a_suite_that_opts_in_loads_no_loop_or_tracer(tmp_path: Path) -> None:
    """A suite on the virtual clock with a blocking gate and an allow list:
    collecting it parses the rules, and makes no loop and no tracer yet."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncspec_clock = virtual\n"
        "asyncspec_max_blocking = 0.05\nasyncspec_allow_blocking =\n    legacy/*.py\n"
    )
    (tmp_path / "test_app.py").write_text(
        "import asyncio\n\n\nasync def test_sleeps():\n    await asyncio.sleep(1)\n"
    )
    run = "pytest.main(['--co', '-q', '-p', 'no:cacheprovider'])"
    assert loaded_by(run, cwd=tmp_path) == EVERY_RUN | {
        "pytest_asyncspec.checks",
        "pytest_asyncspec.checks.allow_rules",
    }


UNITTEST_CASE = (
    "import asyncio\nimport unittest\n\n\n"
    "class Case(unittest.IsolatedAsyncioTestCase):\n"
    "    async def test_sleeps(self):\n        await asyncio.sleep(0)\n"
)


def test_running_unittest_async_cases_that_ask_for_nothing_loads_nothing_more(
    tmp_path: Path,
) -> None:
    """Their test case keeps its own loop: the seam's module is not loaded."""
    (tmp_path / "test_cases.py").write_text(UNITTEST_CASE)
    run = "pytest.main(['-q', '-p', 'no:cacheprovider'])"
    assert loaded_by(run, cwd=tmp_path) == EVERY_RUN


def test_unittest_async_cases_on_the_virtual_clock_load_the_seam(tmp_path: Path) -> None:
    # The control of the test above: the probe sees the module when it is used.
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncspec_clock = virtual\n")
    (tmp_path / "test_cases.py").write_text(UNITTEST_CASE)
    run = "pytest.main(['-q', '-p', 'no:cacheprovider'])"
    assert "pytest_asyncspec.plugin.unittest_cases" in loaded_by(run, cwd=tmp_path)


def test_a_claim_marker_loads_the_claims_module(tmp_path: Path) -> None:
    # The control: the probe does see a module that a used feature loads.
    (tmp_path / "test_claim.py").write_text(
        "import pytest\n\n\n@pytest.mark.claim('A1')\ndef test_tagged():\n    assert True\n"
    )
    run = "pytest.main(['-q', '-p', 'no:cacheprovider'])"
    assert loaded_by(run, cwd=tmp_path) == EVERY_RUN | {"pytest_asyncspec.plugin.claims"}


def test_public_names_still_import_on_first_use() -> None:
    import pytest_asyncspec

    for name in pytest_asyncspec.__all__:
        assert getattr(pytest_asyncspec, name) is not None, name
