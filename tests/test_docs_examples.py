"""Every example in the documentation is a real file, and does what the page
says it does.

Every code block of a page that shows a file is preceded by
``<!-- file: examples/<page>/<name> -->`` and must be that file, byte for
byte; every ```python block must show a file, and every file of an example
directory must be shown.  A script's printed output, where a page shows it
(``<!-- output: examples/<page>/<script>.py -->`` before a ```text block),
must be what the script prints now.  Each how-to guide's directory runs in
an inner pytest session with the outcome its guide describes; each concept
page's test files must pass.  The root configuration does not collect
docs/, so this is where they run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytester_helpers import failure_sections, line_of, output_of

from pytest_asyncspec.tracing.step_log import coarse_resolution_ns

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOW_TO = DOCS / "how-to"
EXAMPLES = HOW_TO / "examples"
GUIDES = sorted(HOW_TO.glob("*.md"))
PAGES = sorted(DOCS.glob("*.md"))
#: Example directories of the concept pages (docs/examples/<page>/).
CONCEPT_EXAMPLES = sorted(path for path in (DOCS / "examples").iterdir() if path.is_dir())

QUOTED = re.compile(r"<!-- file: (\S+) -->\n```(\w+)\n(.*?)```\n", re.S)
PRINTED = re.compile(r"<!-- output: (\S+) -->\n```text\n(.*?)```\n", re.S)
# anyio's plugin comes with httpx; the outer suite keeps it out too (pyproject),
# except where a page is about the tests it runs.
NO_ANYIO = ("-p", "no:anyio")
ANYIO_PAGES = {"anyio"}


def test_there_is_a_guide_for_each_example_directory() -> None:
    assert [guide.stem for guide in GUIDES] == sorted(p.name for p in EXAMPLES.iterdir())


def test_there_is_a_page_for_each_concept_example_directory() -> None:
    assert {path.name for path in CONCEPT_EXAMPLES} <= {page.stem for page in PAGES}


def check_quotes(page: Path) -> list[str]:
    """Check the page's quoted files; return their paths (relative to the page)."""
    text = page.read_text()
    quoted = QUOTED.findall(text)
    assert len(re.findall(r"^```python$", text, re.M)) == sum(
        language == "python" for _, language, _ in quoted
    ), f"a ```python block of {page.name} has no <!-- file: ... --> line"
    for name, _, body in quoted:
        assert name.startswith(f"examples/{page.stem}/"), name
        assert body == (page.parent / name).read_text(), f"{page.name} shows an old {name}"
    return [name for name, _, _ in quoted]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda guide: guide.name)
def test_every_code_block_of_a_guide_is_the_file_it_names(guide: Path) -> None:
    assert check_quotes(guide), f"{guide.name} quotes no example file"
    # The guide links the index, and the index links the guide.
    assert f"how-to/{guide.name}" in (DOCS / "index.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_code_block_of_a_page_is_the_file_it_names(page: Path) -> None:
    shown = set(check_quotes(page))
    directory = DOCS / "examples" / page.stem
    if directory.is_dir():
        files = {f"examples/{page.stem}/{path.name}" for path in directory.glob("*.py")}
        assert files <= shown, f"{page.name} does not show {sorted(files - shown)}"


def printed_outputs() -> list[tuple[Path, str, str]]:
    found = []
    for page in PAGES + GUIDES:
        for name, text in PRINTED.findall(page.read_text()):
            found.append((page, name, text))
    return found


@pytest.mark.parametrize(
    ("page", "script", "expected"),
    printed_outputs(),
    ids=[f"{page.name}:{script}" for page, script, _ in printed_outputs()],
)
def test_a_printed_output_is_what_the_script_prints(page: Path, script: str, expected: str) -> None:
    path = page.parent / script
    assert script in {name for name, _, _ in QUOTED.findall(page.read_text())}
    done = subprocess.run(
        [sys.executable, path.name], cwd=path.parent, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected


@pytest.mark.parametrize(
    "directory",
    [path for path in CONCEPT_EXAMPLES if any(path.glob("test_*.py"))],
    ids=lambda path: path.name,
)
def test_the_tests_of_a_concept_page_pass(pytester: pytest.Pytester, directory: Path) -> None:
    for source in directory.iterdir():
        if source.suffix in {".py", ".ini"}:
            shutil.copy(source, pytester.path / source.name)
    keep_out = () if directory.name in ANYIO_PAGES else NO_ANYIO
    result = pytester.runpytest_subprocess(*keep_out, "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= len(list(directory.glob("test_*.py"))), output_of(result)
    assert set(outcomes) <= {"passed", "seconds"}, output_of(result)


def copy_example(pytester: pytest.Pytester, name: str) -> Path:
    for source in sorted((EXAMPLES / name).iterdir()):
        if source.is_file() and source.suffix in {".py", ".ini"}:
            shutil.copy(source, pytester.path / source.name)
    return pytester.path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # A fresh process each run: the examples import ``app``, which some runs
    # replace with ``app_fixed.py``; an in-process run would reuse the module.
    return pytester.runpytest_subprocess(*NO_ANYIO, *args)


def test_blocking_gate(pytester: pytest.Pytester) -> None:
    path = copy_example(pytester, "blocking-gate")
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    checksum = line_of(path / "app.py", "time.sleep(0.2)")
    warm_up = line_of(path / "app.py", "time.sleep(0.1)")
    result.stdout.fnmatch_lines(
        [
            "Task * (test_handle_returns_a_checksum) blocked the event loop for * s "
            "(real time; threshold 0.05 s).",
            f"Blocking call: */app.py:{checksum} in checksum",
            "*asyncspec: blocking steps allowed by rules*",
            "app.warm_up_cache -> 1 step at 1 place:",
            f"  task 'test_start_loads_the_cache' at app.py:{warm_up} in warm_up_cache: 1 step, "
            "worst * s (real time)",
            "*asyncspec: allow-list rules that never fired*",
            "app.load_legacy_index  (no blocking step matched it; remove it?)",
        ]
    )
    # Threshold-only recording stamps steps with the coarse monotonic clock:
    # a 0.2 s sleep may read one kernel tick short (0.196 s at HZ=250).
    tick = (coarse_resolution_ns() or 0) / 1e9
    output = failure_sections(result)
    (blocked,) = re.findall(
        r"\(test_handle_returns_a_checksum\) blocked the event loop for ([\d.]+) s", output
    )
    (warm,) = re.findall(r"in warm_up_cache: 1 step, worst ([\d.]+) s", output)
    assert 0.2 - tick - 1e-6 <= float(blocked) < 0.3
    assert 0.1 - tick - 1e-6 <= float(warm) < 0.2
    # The allowed start-up code is not reported as a failure, only listed
    # under the rule that allowed it.
    assert output.count("warm_up_cache") == 2

    shutil.copy(path / "app_fixed.py", path / "app.py")
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "blocked the event loop" not in output_of(result)


#: The line that replaces the gather in the guide's "what a failure looks like".
SEQUENTIAL = "    rows = [await parse(item) for item in items]\n"


def test_pipeline_timing(pytester: pytest.Pytester) -> None:
    path = copy_example(pytester, "pipeline-timing")
    run(pytester, "-p", "no:cacheprovider").assert_outcomes(passed=2)
    result = run(pytester, "-p", "no:cacheprovider", "--asyncspec-clock=real")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["asyncspec: clock=real (command line)*"])

    # The mistake the guide shows: parsing the items one at a time.
    assert f"`{SEQUENTIAL.strip()}`" in (HOW_TO / "pipeline-timing.md").read_text()
    app = path / "app.py"
    concurrent = "    rows = list(await asyncio.gather(*(parse(item) for item in items)))\n"
    assert concurrent in app.read_text()
    app.write_text(app.read_text().replace(concurrent, SEQUENTIAL))
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["E * pipeline of 10 items: expected 0.6 s, measured 3.3 s (virtual clock, exact to 1 ns)"]
    )


def test_find_a_race(pytester: pytest.Pytester) -> None:
    path = copy_example(pytester, "find-a-race")
    # With the cache on: the failing schedule is stored.
    result = run(pytester, "--asyncspec-seed=2")
    result.assert_outcomes(failed=1)
    text = output_of(result)
    assert "withdraw-2 ran ahead of withdraw-1" in text
    ledger = line_of(path / "app.py", "# write the ledger entry")
    assert f"suspended at app.py:{ledger} `await asyncio.sleep(0.01)" in text
    tokens = set(re.findall(r"--asyncspec-replay=(\S+)", text))
    assert len(tokens) == 1, tokens
    (token,) = tokens

    # The next run replays the stored schedule before exploring anything new.
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert "a stored failing schedule (" in output_of(result)

    # The token alone, without the store, reproduces the failure.
    replay = ("-p", "no:cacheprovider", f"--asyncspec-replay={token}")
    result = run(pytester, *replay)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*: replayed schedule failed"])

    # The Lock fixes it: the replay and a fresh exploration pass.
    shutil.copy(path / "app_fixed.py", path / "app.py")
    result = run(pytester, *replay)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*: replayed schedule passed"])
    result = run(pytester, "--asyncspec-seed=2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*: 200 schedules, * (mix, run seed 2)*"])


def test_perfetto(pytester: pytest.Pytester) -> None:
    path = copy_example(pytester, "perfetto")
    result = run(pytester, "-p", "no:cacheprovider", "--asyncspec-trace-dir=traces")
    result.assert_outcomes(passed=1)
    (trace,) = (path / "traces").iterdir()
    assert trace.name.startswith("test_breakfast.py__test_breakfast_is_ready_in_three_seconds-")
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert tracks == {1: "test_breakfast_is_ready_in_three_seconds", 2: "kettle", 3: "toaster"}
    slices = [(e["tid"], e["name"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"]
    # The only slice with a length: the toaster's blocking step, 1 s in, 0.5 s long.
    assert [s for s in slices if s[3]] == [(3, "toast_bread", 1_000_000, 500_000)]
    ended = [(e["tid"], e["ts"], e["args"]["outcome"]) for e in events if e["name"] == "ended"]
    assert sorted(ended) == [
        (1, 3_000_000, "returned"),
        (2, 3_000_000, "returned"),
        (3, 2_500_000, "returned"),
    ]


def test_unittest_cases(pytester: pytest.Pytester) -> None:
    path = copy_example(pytester, "unittest-cases")
    result = run(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    lookup = line_of(path / "service.py", "time.sleep(0.2)")
    result.stdout.fnmatch_lines(
        [
            "*_ LookupTest.test_lookup _*",
            "1 task step(s) held the event loop longer than max_blocking=0.05 s during the test:",
            "",
            # On 3.10 the task is unittest's own, which runs every part of the case.
            "Task * blocked the event loop for 0.2 s (virtual time, "
            "in 1 blocking time.sleep() call; threshold 0.05 s).",
            f"Blocking call: */service.py:{lookup} in lookup",
            "*asyncspec: blocking places*",
            f"test_service.py::LookupTest::test_lookup: task * at service.py:{lookup} "
            "in lookup: 1 step, worst 0.2 s (virtual time)",
        ]
    )

    # The guide's leak: the test case without the cleanup that stops the cache.
    cleanup = "        self.addAsyncCleanup(self.cache.stop)\n"
    test = path / "test_service.py"
    assert cleanup in test.read_text()
    assert f"`{cleanup.strip()}`" in (HOW_TO / "unittest-cases.md").read_text()
    test.write_text(test.read_text().replace(cleanup, ""))
    result = run(pytester, "-p", "no:cacheprovider", "-k", "CacheTest")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at teardown of CacheTest.test_refreshes_every_minute _*",
            "1 task(s) still pending after the test's teardown *",
            "task * (Cache._refresh) * is still pending; it awaits asyncio sleep(): a Future",
            f"  created at */service.py:{line_of(path / 'service.py', 'create_task')} "
            "(loop time 0 s) during the test",
        ]
    )
