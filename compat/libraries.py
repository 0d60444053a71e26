"""The libraries whose own test suites the harness runs, pinned, and how to run each.

Each library is an sdist from PyPI at a fixed version: its tests come from
the sdist, so they match the code installed.  What the harness adds to a
library's own pytest configuration is listed here with the reason; it is the
same in every mode, the run without the plugin included.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Library:
    name: str  # the distribution name on PyPI
    version: str
    what: str  # the kind of asyncio code it is, for the report
    #: What pytest is given to collect, relative to the unpacked sdist.
    paths: tuple[str, ...] = ("tests",)
    #: Node-id prefixes not run, each with why (pytest's --deselect).
    deselect: dict[str, str] = field(default_factory=dict)
    #: A -m expression, and why, when whole markers need outside services.
    markers: tuple[str, str] | None = None
    #: ini values the sdist lacks (its repository has them), each with why.
    ini: dict[str, str] = field(default_factory=dict)
    #: The suite's own addopts use the cache plugin (--cache-clear), so it is
    #: kept and pointed at a scratch directory instead of being disabled.
    needs_cacheprovider: bool = False

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


LIBRARIES: tuple[Library, ...] = (
    Library(
        "aiolimiter",
        "1.3.0",
        "rate limiter (leaky bucket)",
        deselect={
            "tests/test_aiolimiter.py::test_version": "compares the version with the "
            "library's git tags; an sdist has no git history",
        },
    ),
    Library(
        "async-lru",
        "2.4.0",
        "LRU cache with TTL for coroutines",
        needs_cacheprovider=True,
    ),
    Library(
        "aiojobs",
        "1.4.0",
        "job scheduler (and its aiohttp integration, on a 127.0.0.1 test server)",
        ini={
            "asyncio_mode": "auto: the repository's pytest configuration, which the "
            "sdist does not ship, runs its undecorated async tests",
        },
    ),
    Library(
        "janus",
        "2.0.0",
        "queue bridging threads and asyncio",
        deselect={
            "tests/test_benchmarks.py": "needs a benchmark fixture plugin that is not "
            "among janus's declared test dependencies; the benchmarks drive their own "
            "asyncio.Runner, which no mode changes",
        },
    ),
    Library("async-timeout", "5.0.1", "timeouts (context manager)"),
    Library(
        "aiocache",
        "0.12.3",
        "cache with TTL (in-memory backend)",
        paths=("tests/ut", "tests/acceptance"),
        deselect={
            "tests/ut/backends/test_redis.py": "the Redis backend (its client mocked, but "
            "written against a Redis server's replies)",
            "tests/ut/backends/test_memcached.py": "the Memcached backend",
        },
        markers=(
            "not redis and not memcached",
            "acceptance tests with these markers need a Redis or Memcached server",
        ),
    ),
    Library("asgiref", "3.13.0", "sync_to_async / async_to_sync (threads and executors)"),
)

#: Test dependencies of all the libraries, in one environment (they do not
#: conflict).  pytest-cov only so that suites whose addopts ask for coverage
#: start; the harness passes --no-cov, so nothing is measured.
TEST_REQUIREMENTS: tuple[str, ...] = (
    "pytest==9.0.3",
    "pytest-asyncio==1.5.0",
    "pytest-cov==7.1.0",
    "pytest-timeout==2.4.0",
    "pytest-mock==3.17.0",
    "pytest-aiohttp==1.1.1",
    "aiohttp==3.14.5",
    "dunamai==1.26.5",
    "typing_extensions==4.16.0",
    "packaging==26.4",
    "marshmallow==3.26.1",
    "msgpack==1.2.4",
    "redis==5.2.1",
    "aiomcache==0.8.2",
)


def by_name(names: list[str] | None) -> list[Library]:
    """The libraries named (all when ``names`` is None); unknown names raise KeyError."""
    if names is None:
        return list(LIBRARIES)
    known = {library.name: library for library in LIBRARIES}
    return [known[name] for name in names]
