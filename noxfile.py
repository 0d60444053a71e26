"""The version matrix: ``nox`` runs the plugin's tests and the spec suite on
every supported Python, the uvloop run, and the lint and type gates.

    pip install nox
    nox                      # everything
    nox -s tests-3.12        # one interpreter
    nox -s uvloop lint       # the uvloop run and the gates
    nox -s conformance       # CPython's test_asyncio on our loops, every Python
    nox -s bench             # benchmarks/ (the bench extra, looptime included)
    nox -s compat            # real libraries' own test suites in every mode

Interpreters are found on PATH as ``python3.10`` ... ``python3.13``; when
pyenv is installed, its versions are added to PATH first, so a machine with
``pyenv install 3.10 3.11 3.12 3.13`` needs nothing else.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
nox.options.sessions = ["tests", "pure_python", "uvloop", "lint"]
nox.options.error_on_missing_interpreters = True


def _pyenv_bins() -> list[str]:
    """bin directories of pyenv's interpreters, newest patch release first."""
    try:
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return []
    versions = Path(root) / "versions"
    found = []
    for minor in PYTHONS:
        candidates = sorted(versions.glob(f"{minor}.*"), reverse=True)
        found.extend(str(path / "bin") for path in candidates[:1] if (path / "bin").is_dir())
    return found


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The README's test command: spec suite and plugin tests, on the virtual clock."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session(python="3.11")
def pure_python(session: nox.Session) -> None:
    """The suite with the pure-Python step recorder and pick loop instead of
    the C ones: what users get where the C accelerators were not built (no
    compiler, non-Linux)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "2", *session.posargs, env={"PYTEST_ASYNCSPEC_PURE_PYTHON": "1"})


@nox.session(python="3.11")
def uvloop(session: nox.Session) -> None:
    """The asyncio claims of the parallelism document on uvloop (real clock)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "spec_tests/test_async_python_parallelism.py",
        "--asyncspec-loop=uvloop",
        "--asyncspec-clock=real",
        *session.posargs,
    )


@nox.session(python=False)
def conformance(session: nox.Session) -> None:
    """CPython's own test_asyncio on the stock loop and on ours, every Python.

    Each interpreter runs its own test package; the harness needs nothing but
    the standard library and this checkout, so nothing is installed.
    """
    session.run(
        "python",
        "-m",
        "conformance",
        "--python",
        *PYTHONS,
        "--report",
        "conformance-results.md",
        *session.posargs,
    )


@nox.session(python=False)
def compat(session: nox.Session) -> None:
    """Real asyncio libraries' own test suites without the plugin and in each mode.

    The harness builds its own environment (pinned sdists, their test
    requirements and this checkout, editable) in a cache outside the checkout,
    so nothing is installed here.
    """
    session.run(
        "python", "-m", "compat", "-j", "2", "--report", "compat-results.md", *session.posargs
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict."""
    session.install("-e", ".[test,dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """benchmarks/, with looptime as the peer (the bench extra keeps it out of `test`)."""
    session.install("-e", ".[test,bench]")
    session.run(
        "pytest",
        "benchmarks/",
        "--benchmark-columns=min,median,mean,stddev,rounds",
        "--benchmark-group-by=group",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )
