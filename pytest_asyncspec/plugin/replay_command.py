"""The printed replay command: the test, its token, and the run's own options.

A failing explored test prints ``pytest 'NODEID' --asyncspec-replay=TOKEN``.
A project whose conftest adds options (``--variant=buggy`` deciding which
code runs) needs them at replay too, or the schedule replays on other code.
So the command carries every option given on this run's command line
(``config.invocation_params.args``), quoted for a POSIX shell, except:

* what selects the tests to run: file and node ids, ``-k``, ``-m``,
  ``--deselect``, ``--lf`` and the like (the node id selects the test);
* what the replay replaces: ``--asyncspec-replay``, ``--asyncspec-schedules``,
  ``--asyncspec-seed``, ``--asyncspec-strategy``, ``--asyncspec-depth``;
* what only decides where output goes or how it looks (``-v``, ``--tb``,
  ``--junitxml``, the asyncspec report paths, ``--basetemp``), or how many
  processes run (``-n``): a replay must not overwrite this run's reports.

Options given through ``PYTEST_ADDOPTS`` are not repeated (the variable,
if still set, would give them twice); the command then says to set it as
this run did.  The ini file's ``addopts`` are read again at replay.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

import pytest

from .state import run_state

__all__ = ["carried_options", "replay_command", "replay_line"]

#: Options left out of the command, with whether each takes a value.
_LEFT_OUT: dict[str, bool] = {
    # selection
    "-k": True,
    "-m": True,
    "--deselect": True,
    "--ignore": True,
    "--ignore-glob": True,
    "--pyargs": False,
    "--lf": False,
    "--last-failed": False,
    "--ff": False,
    "--failed-first": False,
    "--nf": False,
    "--new-first": False,
    "--sw": False,
    "--stepwise": False,
    "--sw-skip": False,
    "--stepwise-skip": False,
    "--lfnf": True,
    "--last-failed-no-failures": True,
    "--co": False,
    "--collect-only": False,
    "-x": False,
    "--exitfirst": False,
    "--maxfail": True,
    # what the replay replaces
    "--asyncspec-replay": True,
    "--asyncspec-schedules": True,
    "--asyncspec-seed": True,
    "--asyncspec-strategy": True,
    "--asyncspec-depth": True,
    # output and parallelism
    "-v": False,
    "-vv": False,
    "-vvv": False,
    "--verbose": False,
    "-q": False,
    "-qq": False,
    "--quiet": False,
    "-r": True,
    "--tb": True,
    "--color": True,
    "--code-highlight": True,
    "--durations": True,
    "--durations-min": True,
    "--junitxml": True,
    "--junit-xml": True,
    "--junit-prefix": True,
    "--result-log": True,
    "--basetemp": True,
    "--asyncspec-html": True,
    "--asyncspec-report": True,
    "--asyncspec-trace-dir": True,
    "-n": True,
    "--numprocesses": True,
    "--maxprocesses": True,
    "--dist": True,
}


def carried_options(args: Sequence[str], positional: Sequence[str]) -> list[str]:
    """The options of ``args`` the replay command repeats: ``positional``
    (the file and node ids pytest read from them) and :data:`_LEFT_OUT` go."""
    ids = list(positional)
    carried: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        if arg in ids:
            ids.remove(arg)
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
        takes_value = _LEFT_OUT.get(name)
        if takes_value is None and arg.startswith("-") and not arg.startswith("--"):
            takes_value = _LEFT_OUT.get(arg)  # -vv, -qq
        if takes_value is None:
            carried.append(arg)
        elif takes_value and arg == name:
            skip_value = True  # "-k expr": the value is the next argument
    return carried


def _parts(config: pytest.Config) -> tuple[str, str]:
    """(the carried options, quoted; what the command could not carry), once a run."""
    run = run_state(config)
    if run.replay_command is None:
        args = [str(arg) for arg in config.invocation_params.args]
        positional = [str(arg) for arg in (config.getoption("file_or_dir") or [])]
        options = " ".join(shlex.quote(arg) for arg in carried_options(args, positional))
        addopts = os.environ.get("PYTEST_ADDOPTS", "").strip()
        caveat = (
            f"with PYTEST_ADDOPTS={shlex.quote(addopts)} set as in this run: options given "
            "there are not repeated in the command"
            if addopts
            else ""
        )
        run.replay_command = (options, caveat)
    return run.replay_command


def replay_command(config: pytest.Config | None, nodeid: str, token: str) -> tuple[str, str]:
    """The command that replays ``token`` of the test ``nodeid``, and what it
    could not carry ("" when it carries everything; no options without a config)."""
    options, caveat = ("", "") if config is None else _parts(config)
    quoted = "'" + nodeid.replace("'", "'\"'\"'") + "'"
    command = f"pytest {quoted} --asyncspec-replay={token}"
    return (f"{command} {options}" if options else command), caveat


def replay_line(config: pytest.Config | None, nodeid: str, token: str) -> str:
    """:func:`replay_command` on one line, what it could not carry in brackets."""
    command, caveat = replay_command(config, nodeid, token)
    return f"{command} ({caveat})" if caveat else command
