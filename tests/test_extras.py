"""What the ``test`` extra installs must not change a user's pytest run.

A pytest plugin acts on every run of the environment it is installed in, by
being installed (``pytest11`` entry points load unless ``-p no:NAME``).  The
``test`` extra is what the README's set-up command installs, so every plugin
it brings, directly or through a dependency, must be one that does nothing
until a run asks for it.  Peers that act by being installed (looptime
re-classes every loop fixture) belong in the ``bench`` extra, which nox keeps
in a session of its own.
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

#: Plugins the ``test`` extra may bring, each with why it is inert until asked.
OPT_IN_PLUGINS = {
    # Ours: changes nothing but a header line until a test or the ini opts in.
    "asyncspec": "pytest-asyncspec",
    # Runs only async tests, which would not run without it.
    "asyncio": "pytest-asyncio",
    # Acts only with a timeout in the ini or on the command line.
    "timeout": "pytest-timeout",
    # Act only with -n / --looponfail.
    "xdist": "pytest-xdist",
    "xdist.looponfail": "pytest-xdist",
    # Fixtures only (aiohttp_client, aiohttp_server, ...), used when asked for.
    "aiohttp": "pytest-aiohttp",
    # Runs only tests marked for anyio or asking for its backend fixture.
    "anyio": "anyio",
}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by(dist_name: str, extras: frozenset[str]) -> set[str]:
    """Names of the installed distributions that ``dist_name[extras]`` pulls in."""
    seen: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [(dist_name, extras)]
    while pending:
        name, wanted = pending.pop()
        key = _normalised(name)
        if (key, wanted) in visited:
            continue
        visited.add((key, wanted))
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-conditional or absent optional dependency
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return seen


def test_the_test_extra_brings_only_opt_in_pytest_plugins() -> None:
    pulled_in = _installed_by("pytest-asyncspec", frozenset({"test"}))
    assert {"pytest", "pytest-xdist", "httpx"} <= pulled_in, pulled_in
    brought = {
        entry.name: _normalised(entry.dist.name)
        for entry in metadata.entry_points(group="pytest11")
        if entry.dist is not None and _normalised(entry.dist.name) in pulled_in
    }
    unexpected = {name: dist for name, dist in brought.items() if name not in OPT_IN_PLUGINS}
    assert not unexpected, (
        f"the test extra installs pytest plugins that act on every run: {unexpected}; "
        "move them to an extra of their own (see pyproject.toml)"
    )
    assert brought["asyncspec"] == "pytest-asyncspec"


def test_looptime_is_in_the_bench_extra_only() -> None:
    requires = [Requirement(text) for text in metadata.requires("pytest-asyncspec") or []]
    extras_naming = {
        str(req.marker).split("extra == ")[-1].strip("\"'")
        for req in requires
        if req.name == "looptime" and req.marker is not None
    }
    assert extras_naming == {"bench"}, extras_naming
