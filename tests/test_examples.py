"""The examples do what their pages say.

The worked example (``examples/fetcher``) does what its walkthrough says.

Its tests run in an inner pytest session: on ``app_fixed.py`` they all pass;
on ``app_buggy.py`` each of three fails with the plugin's own diagnosis of
one bug -- the blocking gate naming the ``time.sleep`` line, the timing
assertion's expected and measured figures, and the exploration report with a
replay token that fails again when replayed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pytester_helpers import line_of, output_of

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fetcher"

# As strict as this project's own configuration (see test_plugin_exploration.py).
INI = """\
[pytest]
addopts = --strict-markers -p no:anyio
filterwarnings = error
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# A fixed run seed keeps the explored schedules the same from run to run.
SEED = "--asyncspec-seed=5"
RACE_TEST = "test_fetcher.py::test_each_category_is_looked_up_once"


@pytest.fixture
def example(pytester: pytest.Pytester) -> Path:
    """A copy of the example in the inner session's directory."""
    for source in sorted(EXAMPLE.glob("*.py")):
        shutil.copy(source, pytester.path / source.name)
    pytester.makeini(INI)
    return pytester.path


def test_the_fixed_app_passes_every_test(pytester: pytest.Pytester, example: Path) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", SEED)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([f"{RACE_TEST}: 500 schedules, * (mix, run seed 5)*"])


def test_the_buggy_app_fails_with_one_diagnosis_per_bug(
    pytester: pytest.Pytester, example: Path
) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", SEED, "--app=buggy", "-rA")
    result.assert_outcomes(passed=1, failed=3)
    # The end-to-end test cannot see any of the three bugs.
    result.stdout.fnmatch_lines(["PASSED test_fetcher.py::test_crawl_prices_every_item"])

    # 1. The blocking gate names the throttle's time.sleep, with its virtual length.
    sleep = line_of(example / "app_buggy.py", "time.sleep(")
    result.stdout.fnmatch_lines(
        [
            "*_ test_pricing_never_blocks_the_loop _*",
            "* task step(s) held the event loop longer than max_blocking=0.03 s during the test, "
            "at 1 place(s):",
            "Blocked here * steps, worst 0.05 s, total * s (virtual time); the worst step:",
            "Task 'worker' (price_items) blocked the event loop for 0.05 s "
            "(virtual time, in 1 blocking time.sleep() call; threshold 0.03 s).",
            # "in Throttle.wait"; 3.10's code objects know no class: "in wait".
            f"Blocking call: *app_buggy.py:{sleep} in *wait",
        ]
    )

    # 2. The timing assertion: ten times the expected second (one request at a time).
    result.stdout.fnmatch_lines(
        [
            "*_ test_fetching_overlaps_requests _*",
            "E   *TimingAssertionError: fetching 20 items, 10 at a time: "
            "expected 1.0 s, measured 10.0 s (virtual clock, exact to 1 ns)",
        ]
    )

    # 3. Exploration: stock order passes, another order looks books up twice.
    result.stdout.fnmatch_lines(
        [
            "*_ test_each_category_is_looked_up_once _*",
            "E * assert *'books': 2* == {'books': 1, 'games': 1}",
            "*- asyncspec schedule -*",
            "schedule * of 500 failed (*)",
            "stock asyncio never runs this in-memory code in this order*",
            "the deviations from stock order that make it fail:",
            "  1. * ran ahead of *",
            f"replay: pytest '{RACE_TEST}' --asyncspec-replay=asyncspec1:*",
        ]
    )

    # The token replays that one order: the race fails again at once.
    (token,) = set(re.findall(r"--asyncspec-replay=(asyncspec1:\S+)", output_of(result)))
    replayed = pytester.runpytest(
        "-p", "no:cacheprovider", "--app=buggy", RACE_TEST, f"--asyncspec-replay={token}"
    )
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["E * assert *'books': 2* == {'books': 1, 'games': 1}"])


STATUS_PAGE = EXAMPLE.parent / "status_page"


@pytest.fixture
def status_page(pytester: pytest.Pytester) -> Path:
    """A copy of the status page example, with its own ini (anyio's plugin runs it)."""
    for source in [*STATUS_PAGE.glob("*.py"), STATUS_PAGE / "pytest.ini"]:
        shutil.copy(source, pytester.path / source.name)
    return pytester.path


def test_the_status_page_passes_through_anyio_on_the_virtual_clock_with_the_gate(
    pytester: pytest.Pytester, status_page: Path
) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "asyncspec: clock=virtual (ini), loop=asyncio (default)",
            "*test_the_probes_run_concurrently PASSED*",
        ]
    )
    assert "outside the modes" not in output_of(result)


def test_the_status_page_s_gate_names_a_blocking_probe(
    pytester: pytest.Pytester, status_page: Path
) -> None:
    conftest = status_page / "conftest.py"
    text = conftest.read_text()
    blocking = text.replace(
        "        await anyio.sleep(self.latency)", "        time.sleep(self.latency)"
    ).replace("import anyio\n", "import time\n\nimport anyio\n", 1)
    assert blocking != text
    conftest.write_text(blocking)
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "concurrently")
    result.assert_outcomes(failed=1, deselected=2)
    line = line_of(conftest, "time.sleep(self.latency)")
    result.stdout.fnmatch_lines(
        [
            "*blocked the event loop for 1.5 s (virtual time, in 1 blocking time.sleep() call;"
            " threshold 0.05 s).",
            # 3.10 names the function alone (code objects have no qualified name).
            f"Blocking call: *conftest.py:{line} in *__call__",
        ]
    )
