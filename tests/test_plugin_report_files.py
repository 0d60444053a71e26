"""The files the plugin writes (claims JSON, HTML page, trace files): what a
path names is never replaced unless it is a regular file, report paths are
checked without creating anything, path settings refuse empty and quoted
values, and a trace file keeps at most --asyncspec-trace-max-steps steps."""

from __future__ import annotations

import json
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from pytester_helpers import VIRTUAL_INI, assert_usage_error, output_of

from pytest_asyncspec.plugin.settings import DEFAULT_TRACE_MAX_STEPS, TRACE_MAX_STEPS
from pytest_asyncspec.tracing.trace_events import MAX_STEPS, trace_file_name

#: (flag, ini key, a file name the setting could take, a text its file starts with)
FILES = [
    ("--asyncspec-html", "asyncspec_html", "report.html", "<!DOCTYPE html>"),
    ("--asyncspec-report", "asyncspec_report", "report.json", "{"),
]
PATH_SETTINGS = [
    ("--asyncspec-html", "asyncspec_html", "report.html"),
    ("--asyncspec-report", "asyncspec_report", "report.json"),
    ("--asyncspec-trace-dir", "asyncspec_trace_dir", "traces"),
]
ASYNC_TEST = "async def test_a():\n    pass\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_a=ASYNC_TEST)
    return pytester


# -- what a path names is not replaced ------------------------------------------------


def _device(kind: str, tmp_path: Path) -> Path:
    if kind == "/dev/null":
        return Path("/dev/null")
    path = tmp_path / "null-device"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("making a device node needs root")
    return path


@pytest.mark.parametrize("kind", ["/dev/null", "a device node"])
@pytest.mark.parametrize(("flag", "ini", "name", "start"), FILES)
def test_a_character_device_is_written_to_never_replaced(
    project: pytest.Pytester, tmp_path: Path, kind: str, flag: str, ini: str, name: str, start: str
) -> None:
    """``--asyncspec-html=/dev/null`` (root runs the tests here) leaves
    /dev/null a character device, and the run says the report was written."""
    device = _device(kind, tmp_path)
    result = project.runpytest(f"{flag}={device}")
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert not device.is_symlink()
    result.stdout.fnmatch_lines([f"asyncspec: * written to {device}"])


@pytest.mark.parametrize(("flag", "ini", "name", "start"), FILES)
def test_a_symlinked_report_is_written_through_the_link(
    project: pytest.Pytester, tmp_path: Path, flag: str, ini: str, name: str, start: str
) -> None:
    """The link stays a link; the file it points to (elsewhere) gets the report."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real = elsewhere / name
    real.write_text("old")
    link = project.path / name
    link.symlink_to(real)
    result = project.runpytest(f"{flag}={name}")
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert link.is_symlink()
    assert link.resolve() == real
    assert real.read_text().startswith(start)
    assert sorted(path.name for path in elsewhere.iterdir()) == [name]  # no temporary left


def test_a_symlinked_report_to_a_missing_file_creates_the_file(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    real = tmp_path / "later" / "report.json"
    (tmp_path / "later").mkdir()
    (project.path / "report.json").symlink_to(real)
    result = project.runpytest("--asyncspec-report=report.json")
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert (project.path / "report.json").is_symlink()
    assert json.loads(real.read_text())["claims"] == []


def test_a_symlinked_trace_file_is_written_through_the_link(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    traces = project.mkdir("traces")
    real = tmp_path / "real.trace.json"
    real.write_text("old")
    link = traces / trace_file_name("test_a.py::test_a")
    link.symlink_to(real)
    result = project.runpytest("--asyncspec-trace-dir=traces")
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert link.is_symlink()
    assert json.loads(real.read_text())["otherData"]["test_id"] == "test_a.py::test_a"


def test_a_file_open_in_a_process_is_written_in_place(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    """``--asyncspec-report=/dev/stdout`` with stdout redirected to a file:
    the file the process holds gets the report; renaming over it would
    leave the process writing to a file no longer in the directory."""
    with open(tmp_path / "out.txt", "w") as held:
        result = project.runpytest(f"--asyncspec-report=/proc/self/fd/{held.fileno()}")
        assert os.fstat(held.fileno()).st_nlink == 1  # still the file named out.txt
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert json.loads((tmp_path / "out.txt").read_text())["claims"] == []


class FifoReader(threading.Thread):
    """Reads a FIFO until its writer closes it, the test says stop and nothing
    is left to read, or a minute passes: never hangs the test."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        # Opened now, without blocking: the writer's open finds a reader.
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.data = b""
        self.stop = threading.Event()

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        give_up = time.monotonic() + 60
        try:
            while time.monotonic() < give_up:
                if poller.poll(50):
                    chunk = os.read(self.fd, 1 << 16)
                    if not chunk:
                        return  # the writer closed it
                    self.data += chunk
                elif self.stop.is_set():
                    return  # nothing was written, or nothing more
        finally:
            os.close(self.fd)


@pytest.mark.parametrize(("flag", "ini", "name", "start"), FILES)
def test_a_fifo_is_written_to_as_a_stream(
    project: pytest.Pytester, flag: str, ini: str, name: str, start: str
) -> None:
    fifo = project.path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    try:
        result = project.runpytest(f"{flag}={fifo}")
    finally:
        reader.stop.set()
        reader.join(timeout=90)
    assert not reader.is_alive()
    assert result.ret == pytest.ExitCode.OK, output_of(result)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert reader.data.decode().startswith(start)


@pytest.mark.parametrize(("flag", "ini", "name", "start"), FILES)
def test_a_directory_or_a_socket_is_a_usage_error(
    project: pytest.Pytester, tmp_path: Path, flag: str, ini: str, name: str, start: str
) -> None:
    (project.path / "adir").mkdir()
    result = project.runpytest(f"{flag}=adir")
    assert_usage_error(result, f"ERROR: {flag}: '{project.path / 'adir'}' is a directory; *")
    # A short path: a socket's path is limited to about 100 bytes.
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        result = project.runpytest(f"{flag}={path}")
    finally:
        server.close()
    assert_usage_error(
        result,
        f"ERROR: {flag}: '{path}' is a socket; give the path of * to write: a new or "
        "regular file, a FIFO or /dev/null",
    )
    assert stat.S_ISSOCK(os.stat(path).st_mode)


RACE = """
import asyncio

import pytest


async def buy(office, parse_steps):
    for _ in range(parse_steps):
        await asyncio.sleep(0)
    if office["seats"] > 0:
        await asyncio.sleep(0)
        office["seats"] -= 1
        office["sold"] += 1


@pytest.mark.asyncspec(schedules=50)
async def test_sold_once():
    office = {"seats": 1, "sold": 0}
    await asyncio.gather(buy(office, 0), buy(office, 1))
    assert office["sold"] == 1
"""


def test_the_failure_store_writes_a_symlinked_entry_through_the_link(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The failure store is pytest's cache, whose entries are written in
    place (never renamed over): a symlinked entry stays a link."""
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(test_race=RACE)
    pytester.runpytest().assert_outcomes(failed=1)
    store = pytester.path / ".pytest_cache" / "v" / "asyncspec"
    (entry,) = [path for path in store.rglob("*") if path.is_file()]
    first = json.loads(entry.read_text())
    assert first["tokens"]
    real = tmp_path / "entry.json"
    real.write_text(json.dumps({"test": first["test"], "tokens": []}))
    entry.unlink()
    entry.symlink_to(real)
    pytester.runpytest().assert_outcomes(failed=1)
    assert entry.is_symlink()
    assert json.loads(real.read_text())["tokens"]


# -- a usage error creates nothing ---------------------------------------------------


def test_a_run_stopped_at_start_up_creates_no_report_directory(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest(
        "--asyncspec-trace-dir=newdir",
        "--asyncspec-html=pages/r.html",
        "--asyncspec-allow-blocking=",
    )
    assert_usage_error(result, "ERROR: --asyncspec-allow-blocking * an empty rule *")
    assert not (project.path / "newdir").exists()
    assert not (project.path / "pages").exists()
    assert "trace files written" not in output_of(result)


def test_a_run_stopped_at_collection_says_nothing_of_trace_files(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI)
    pytester.makepyfile(
        test_a="import pytest\n\n\n"
        "@pytest.mark.asyncspec(clok='virtual')\n"
        "async def test_a():\n    pass\n"
    )
    result = pytester.runpytest("--asyncspec-trace-dir=newdir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output_of(result)
    assert "unknown keyword 'clok'" in output_of(result)
    assert "trace files written" not in output_of(result)
    assert not (pytester.path / "newdir").exists()


# -- path settings: no quotes, not empty -----------------------------------------------


@pytest.mark.parametrize(("flag", "ini", "name"), PATH_SETTINGS)
def test_a_quoted_ini_path_is_told_to_drop_the_quotes(
    project: pytest.Pytester, flag: str, ini: str, name: str
) -> None:
    project.makeini(VIRTUAL_INI + f'{ini} = "{name}"\n')
    result = project.runpytest()
    assert_usage_error(
        result,
        f"ERROR: ini key {ini}: invalid path '\"{name}\"': the quotes would be part of the "
        f"file name (remove the quotes: pytest.ini takes {name}, unquoted)",
    )
    assert sorted(path.name for path in project.path.iterdir()) == ["test_a.py", "tox.ini"]


@pytest.mark.parametrize(("flag", "ini", "name"), PATH_SETTINGS)
def test_an_empty_path_flag_is_a_usage_error(
    project: pytest.Pytester, flag: str, ini: str, name: str
) -> None:
    result = project.runpytest(f"{flag}=")
    assert_usage_error(
        result, f"ERROR: {flag}: an empty path; give a path, or leave the setting out"
    )


# -- trace files are bounded -----------------------------------------------------------

MANY_STEPS = """\
import asyncio


async def test_many():
    for _ in range(30):
        await asyncio.sleep(1)


async def test_few():
    await asyncio.sleep(1)
"""


def test_a_trace_file_keeps_at_most_the_cap_and_the_run_says_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(VIRTUAL_INI + "asyncspec_trace_max_steps = 5\n")
    pytester.makepyfile(test_a=MANY_STEPS)
    result = pytester.runpytest("--asyncspec-trace-dir=traces")
    result.assert_outcomes(passed=2)
    many = json.loads(
        (pytester.path / "traces" / trace_file_name("test_a.py::test_many")).read_text()
    )
    assert many["otherData"]["steps"] == 5
    recorded = many["otherData"]["steps_recorded"]
    assert recorded > 30
    assert sum(1 for event in many["traceEvents"] if event["ph"] == "X") == 5
    assert many["otherData"]["clipped"].startswith(f"this file keeps the first 5 of the {recorded}")
    few = json.loads(
        (pytester.path / "traces" / trace_file_name("test_a.py::test_few")).read_text()
    )
    assert few["otherData"]["clipped"] is None
    result.stdout.fnmatch_lines(
        [
            "asyncspec: 2 trace files written to *traces",
            f"asyncspec: the trace file of test_a.py::test_many keeps the first 5 of its "
            f"{recorded} steps (--asyncspec-trace-max-steps sets the cap)",
        ]
    )
    assert "test_few keeps" not in output_of(result)


def test_the_default_cap_is_the_trace_modules_own() -> None:
    """settings cannot import trace_events at start-up, so it repeats the number."""
    assert TRACE_MAX_STEPS.default == str(DEFAULT_TRACE_MAX_STEPS) == str(MAX_STEPS)


@pytest.mark.parametrize("value", ["0", "many", "-1"])
def test_a_bad_step_cap_is_a_usage_error(project: pytest.Pytester, value: str) -> None:
    result = project.runpytest(f"--asyncspec-trace-max-steps={value}")
    assert_usage_error(
        result,
        f"ERROR: --asyncspec-trace-max-steps: invalid trace_max_steps '{value}'; expected a "
        "whole number 1 or more (e.g. 1000000)",
    )
