"""The plugin's settings: one place that reads options, ini keys and markers.

Every per-test setting has a command-line flag ``--asyncspec-NAME``, an ini
key ``asyncspec_NAME`` and a keyword of the ``asyncspec`` marker.  Precedence
is command line > marker > ini > default, so ``--asyncspec-clock=real``
re-runs a whole virtual-clock suite on the real clock.  Run-wide settings
(where trace files go, which places may block) have a flag and an ini key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import pytest

from ..clock.loops import (
    CLOCK_CHOICES,
    LOOP_CHOICES,
    ClockChoice,
    LoopChoice,
)
from ..clock.ticks import parse_seconds_or_off
from ..exploration.options import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    STRATEGIES,
    parse_depth,
    parse_schedules,
    parse_seed,
    parse_strategy,
    whole_number,
)
from .state import run_state

if TYPE_CHECKING:
    from ..exploration.replay_token import ReplayToken

MARKER = "asyncspec"
CLAIM_MARKER = "claim"
CLAIM_HELP = (
    f"{CLAIM_MARKER}(id, source=None, kind=None, title=None, control=False): tags a test "
    "as the executable form of a documented claim, e.g. "
    "@pytest.mark.claim('S0.3', source='<document title>', kind='T,O'); kind letters "
    "T, O, S, V, R; control=True marks a negative control"
)
LEAK_CHOICES = ("off", "warn", "error")
_OFF_WORDS = ("off", "none", "no", "false", "0")
_ON_WORDS = ("on", "yes", "true", "1")


def _choice(name: str, choices: tuple[str, ...]) -> Callable[[object], object]:
    def parse(value: object) -> object:
        if value not in choices:
            raise ValueError(
                f"invalid {name} {value!r}; expected one of "
                f"{', '.join(repr(choice) for choice in choices)}"
            )
        return value

    return parse


def parse_max_blocking(value: object) -> float | None:
    return parse_seconds_or_off(value, "max_blocking", example="0.1")


#: What a budget's value looks like, in its error message.
_BUDGET_EXAMPLE = "3600, 90s, 30m, 1h, 2d"


def parse_stall_budget(value: object) -> float | None:
    """Virtual seconds (a positive number, optionally with a unit s, m, h or d),
    or off."""
    return parse_seconds_or_off(value, "stall_budget", example=_BUDGET_EXAMPLE, units=True)


def parse_time_budget(value: object) -> float | None:
    """Virtual seconds, as for the stall budget, or off."""
    return parse_seconds_or_off(value, "time_budget", example=_BUDGET_EXAMPLE, units=True)


def parse_on_off(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _ON_WORDS:
        return True
    if text in _OFF_WORDS:
        return False
    raise ValueError(f"invalid trace {value!r}; expected on or off (True or False in a marker)")


def parse_hang_after(value: object) -> float | None:
    return parse_seconds_or_off(value, "hang_after", example="20")


#: Real seconds an async test's loop may wait with nothing but outside
#: sources able to wake it before the test fails as hung (hang_watch.py).
DEFAULT_HANG_AFTER = "20"


def parse_path(value: object) -> str:
    """A file or directory path: not empty, and not wrapped in quotes (which
    pytest.ini keeps, making them part of the file name)."""
    text = str(value)
    if not text.strip():
        raise ValueError("an empty path; give a path, or leave the setting out")
    if _quote_hint(text):
        raise ValueError(f"invalid path {text!r}: the quotes would be part of the file name")
    return text


#: Most steps a trace file keeps unless told (trace_events.MAX_STEPS, which
#: this module cannot import at start-up).
DEFAULT_TRACE_MAX_STEPS = 1_000_000


def parse_trace_max_steps(value: object) -> int:
    return whole_number(value, "trace_max_steps", 1, None, "e.g. 1000000")


# Plain classes with __slots__ rather than dataclasses or typing.NamedTuple:
# this module loads at every pytest start-up, and creating either of those
# classes compiles generated methods and checks annotations, many times the
# cost of a plain class (docs/benchmarks.md, "Figures behind choices in the
# code").
class Setting:
    """One setting: its name, how a value is parsed, its default and help."""

    __slots__ = ("default", "help", "metavar", "name", "parse", "per_test")

    def __init__(
        self,
        name: str,
        parse: Callable[[object], object],
        default: str,
        metavar: str,
        help: str,
        per_test: bool = True,
    ) -> None:
        self.name = name
        self.parse = parse
        self.default = default
        self.metavar = metavar
        self.help = help
        #: Whether the asyncspec marker accepts it (run-wide settings do not).
        self.per_test = per_test

    @property
    def flag(self) -> str:
        return f"--asyncspec-{self.name.replace('_', '-')}"

    @property
    def ini(self) -> str:
        return f"asyncspec_{self.name}"

    @property
    def dest(self) -> str:
        return f"asyncspec_{self.name}"

    def check(self, value: object, where: str) -> object:
        try:
            return self.parse(value)
        except ValueError as error:
            raise pytest.UsageError(f"{where}: {error}{_quote_hint(value)}") from None


def _quote_hint(value: object) -> str:
    """A value pasted with its TOML quotes into pytest.ini keeps them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] in "'\"":
        return f" (remove the quotes: pytest.ini takes {value[1:-1]}, unquoted)"
    return ""


CLOCK = Setting(
    "clock",
    _choice("clock", CLOCK_CHOICES),
    "real",
    "|".join(CLOCK_CHOICES),
    "clock for async tests: 'virtual' (sleeps and timeouts take no real time, "
    "timings exact), 'manual' (the virtual clock, moved only by "
    "`await asyncspec_clock.advance(seconds)`) or 'real' (the stock loop, untouched)",
)
LOOP = Setting(
    "loop",
    _choice("loop", LOOP_CHOICES),
    "asyncio",
    "|".join(LOOP_CHOICES),
    "event loop for async tests: 'asyncio' or 'uvloop' (uvloop needs the real clock)",
)
MAX_BLOCKING = Setting(
    "max_blocking",
    parse_max_blocking,
    "off",
    "SECONDS",
    "fail an async test whose task step holds the loop longer than SECONDS "
    "(virtual seconds on the virtual clock), naming the blocking line; 'off' disables",
)
HANG_AFTER = Setting(
    "hang_after",
    parse_hang_after,
    DEFAULT_HANG_AFTER,
    "SECONDS",
    "fail an async test whose event loop has waited SECONDS of real time with nothing "
    "that could wake it but a listening socket or a source outside the test (no "
    "callback ready, no timer, no busy thread, child process or outside peer), with "
    "every pending task and the line it waits at; 'off' disables",
)
LEAKS = Setting(
    "leaks",
    _choice("leaks", LEAK_CHOICES),
    "off",
    "|".join(LEAK_CHOICES),
    "tasks still pending and coroutines never awaited when an async test ends: "
    "'warn' reports them, 'error' fails the test, 'off' ignores them",
)
TRACE = Setting(
    "trace",
    parse_on_off,
    "off",
    "on|off",
    "record every task step of async tests (failures then show a timeline); "
    "also switched on by trace_dir and the asyncspec_trace fixture (max_blocking "
    "alone keeps only the steps over its threshold)",
)
TRACE_DIR = Setting(
    "trace_dir",
    parse_path,
    "",
    "DIR",
    "write a Trace Event JSON file (Perfetto, chrome://tracing) per traced test into DIR",
    per_test=False,
)
TRACE_MAX_STEPS = Setting(
    "trace_max_steps",
    parse_trace_max_steps,
    str(DEFAULT_TRACE_MAX_STEPS),
    "N",
    "most task steps one trace file keeps (the first N; the file and the run summary "
    "say when a test ran more)",
    per_test=False,
)
REPORT = Setting(
    "report",
    parse_path,
    "",
    "PATH",
    "write the claims report (JSON: one entry per claim ID with its outcome, settings "
    "and documented vs measured figures) to PATH at the end of the run",
    per_test=False,
)
HTML = Setting(
    "html",
    parse_path,
    "",
    "PATH",
    "write a self-contained HTML page to PATH at the end of the run: the claims table "
    "and a timeline picture of every traced test",
    per_test=False,
)
STALL_BUDGET = Setting(
    "stall_budget",
    parse_stall_budget,
    "1h",
    "TIME|off",
    "virtual time (e.g. 3600, 30m, 1h, 2d) tasks may stay blocked on the same "
    "Event/Future/Queue while only timers fire (a deadlock beside a heartbeat): the "
    "test then fails with a livelock report; 'off' lets virtual time run on",
)
TIME_BUDGET = Setting(
    "time_budget",
    parse_time_budget,
    "24h",
    "TIME|off",
    "virtual time (e.g. 86400, 24h, 7d) a test may run once its clock has jumped "
    "10,000 times (a poll that never ends): the test then fails with a runaway "
    "report; 'off' lets virtual time run on",
)
SCHEDULES = Setting(
    "schedules",
    parse_schedules,
    "0",
    "N",
    "run each async test under N task orders (schedules) to find shared-state races; "
    "the first is stock asyncio's order; 0 runs each test once, as usual",
)
STRATEGY = Setting(
    "strategy",
    parse_strategy,
    "mix",
    "|".join(STRATEGIES),
    "how exploration picks orders: 'random' (any ready task at each step), 'pct' "
    "(random priorities with depth-1 change points), 'fifo' (stock order only) or "
    "'mix' (random and PCT at depths 2 and 3 in turn)",
)
DEPTH = Setting(
    "depth",
    parse_depth,
    str(DEFAULT_DEPTH),
    f"1..{MAX_DEPTH}",
    "PCT depth: how many ordering constraints the bugs looked for may need",
)
SEED = Setting(
    "seed",
    parse_seed,
    "random",
    "N|random",
    "seed of exploration's schedules (the header prints the one used; 'random' picks "
    "a fresh one per run)",
)
REPLAY = Setting(
    "replay",
    lambda value: value,
    "",
    "TOKEN",
    "run the explored test the token names under exactly the schedule it records "
    "(tokens are printed under failing explored tests)",
    per_test=False,
)
SETTINGS: tuple[Setting, ...] = (
    CLOCK,
    LOOP,
    MAX_BLOCKING,
    HANG_AFTER,
    LEAKS,
    TRACE,
    STALL_BUDGET,
    TIME_BUDGET,
    SCHEDULES,
    STRATEGY,
    DEPTH,
    SEED,
    TRACE_DIR,
    TRACE_MAX_STEPS,
    REPORT,
    HTML,
    REPLAY,
)
MARKER_KEYWORDS = {setting.name: setting for setting in SETTINGS if setting.per_test}
MARKER_HELP = (
    f"{MARKER}(clock='virtual'|'manual'|'real', loop='asyncio'|'uvloop', "
    "max_blocking=SECONDS|None, hang_after=SECONDS|None, leaks='off'|'warn'|'error', "
    "trace=True|False, "
    "stall_budget=SECONDS|'1h'|None, time_budget=SECONDS|'24h'|None, schedules=N, "
    "strategy='mix'|'fifo'|'random'|'pct', depth=1..10, seed=N): per-test "
    "pytest-asyncspec settings (command-line flags still win)"
)
ALLOW_BLOCKING_INI = "asyncspec_allow_blocking"
ALLOW_BLOCKING_DEST = "asyncspec_allow_blocking"
ALLOW_LEAKS_INI = "asyncspec_allow_leaks"
ALLOW_LEAKS_DEST = "asyncspec_allow_leaks"
ALLOW_LEAKS_MARKER = "allow_leaks"
ALLOW_LEAKS_HELP = (
    f"{ALLOW_LEAKS_MARKER}(*rules): tasks and coroutines this test may leave behind, "
    "named by their coroutine ('module.function', globs allowed, e.g. 'aiohttp.*') or by "
    "where they were created ('path/glob.py', 'path/glob.py:LINE'); added to "
    f"{ALLOW_LEAKS_INI}"
)


class Effective:
    """The settings one test runs with, and where each came from.

    Read-only: tests with no marker of their own share one, and what the
    ``asyncspec_settings`` fixture gives one test must not change another's.
    """

    __slots__ = (
        "clock",
        "depth",
        "hang_after",
        "leaks",
        "loop",
        "max_blocking",
        "schedules",
        "seed",
        "sources",
        "stall_budget",
        "strategy",
        "time_budget",
        "trace",
    )

    clock: ClockChoice
    loop: LoopChoice
    #: Where each value came from: command line, marker, ini or default.
    sources: Mapping[str, str]
    max_blocking: float | None
    hang_after: float | None
    leaks: str
    trace: bool
    schedules: int
    strategy: str
    depth: int
    #: None: a fresh seed for the run (see exploration_seed).
    seed: int | None
    #: Virtual seconds of stall before a livelock is reported (None: off).
    stall_budget: float | None
    #: Virtual seconds a test may run before a runaway is judged (None: off).
    time_budget: float | None

    def __init__(
        self,
        *,
        clock: ClockChoice,
        loop: LoopChoice,
        sources: Mapping[str, str],
        max_blocking: float | None = None,
        hang_after: float | None = float(DEFAULT_HANG_AFTER),
        leaks: str = "off",
        trace: bool = False,
        schedules: int = 0,
        strategy: str = "mix",
        depth: int = DEFAULT_DEPTH,
        seed: int | None = None,
        stall_budget: float | None = 3600.0,
        time_budget: float | None = 86400.0,
    ) -> None:
        values = {
            "clock": clock,
            "loop": loop,
            "sources": MappingProxyType(dict(sources)),
            "max_blocking": max_blocking,
            "hang_after": hang_after,
            "leaks": leaks,
            "trace": trace,
            "schedules": schedules,
            "strategy": strategy,
            "depth": depth,
            "seed": seed,
            "stall_budget": stall_budget,
            "time_budget": time_budget,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"asyncspec settings are read-only (tried to set {name}); ask for other "
            "settings with @pytest.mark.asyncspec(...) on the test instead"
        )

    def _fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: Any) -> Effective:
        return Effective(**{**self._fields(), **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Effective):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        shown = {**self._fields(), "sources": dict(self.sources)}
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"Effective({fields})"


def enabled_modes(effective: Effective) -> list[str]:
    """The modes ``effective`` asks for, as the settings would be written."""
    modes: list[str] = []
    if effective.clock != "real":
        modes.append(f"clock={effective.clock}")
    if effective.loop != "asyncio":
        modes.append(f"loop={effective.loop}")
    if effective.max_blocking is not None:
        modes.append(f"max_blocking={effective.max_blocking:g}")
    if effective.trace:
        modes.append("trace=on")
    if effective.leaks != "off":
        modes.append(f"leaks={effective.leaks}")
    if effective.schedules:
        modes.append(f"schedules={effective.schedules}")
    return modes


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncspec", "pytest-asyncspec: virtual time, traces, timing checks")
    for setting in SETTINGS:
        group.addoption(
            setting.flag,
            dest=setting.dest,
            default=None,
            metavar=setting.metavar,
            help=f"{setting.help}. Overrides the ini key"
            + (" and markers." if setting.per_test else "."),
        )
        # An empty default tells "not set" apart from "set to the default value",
        # so the report header can say where a value came from.
        parser.addini(setting.ini, help=f"{setting.help} (default: {setting.default})", default="")
    group.addoption(
        "--asyncspec-allow-blocking",
        dest=ALLOW_BLOCKING_DEST,
        action="append",
        default=[],
        metavar="RULE",
        help="a place allowed to block (repeatable): 'path/glob.py', 'path/glob.py:LINE' "
        "or 'module.function'; added to the ini list",
    )
    parser.addini(
        ALLOW_BLOCKING_INI,
        type="linelist",
        default=[],
        help="places allowed to block the loop, one rule a line (see --asyncspec-allow-blocking)",
    )
    group.addoption(
        "--asyncspec-allow-leaks",
        dest=ALLOW_LEAKS_DEST,
        action="append",
        default=[],
        metavar="RULE",
        help="tasks and coroutines allowed to outlive a test (repeatable), named by their "
        "coroutine 'module.function' (globs allowed) or where they were created "
        "'path/glob.py', 'path/glob.py:LINE'; added to the ini list",
    )
    parser.addini(
        ALLOW_LEAKS_INI,
        type="linelist",
        default=[],
        help="tasks and coroutines allowed to outlive a test, one rule a line "
        "(see --asyncspec-allow-leaks)",
    )


def validate_config(config: pytest.Config) -> None:
    """Reject bad flag and ini values before any test is collected.

    Report paths are checked without creating anything: a run stopped by a
    usage error (here or later) leaves no report directory behind.
    """
    for setting in SETTINGS:
        flag_value = config.getoption(setting.dest)
        if flag_value is not None:
            setting.check(flag_value, setting.flag)
        ini_value = config.getini(setting.ini)
        if ini_value:
            setting.check(ini_value, f"ini key {setting.ini}")
    for setting, what in ((TRACE_DIR, ""), (REPORT, "a JSON file"), (HTML, "an HTML file")):
        path = _run_path(config, setting)
        if path is None:
            continue
        from .report_files import directory_problem, path_problem

        problem = path_problem(path, what) if what else directory_problem(path)
        if problem is not None:
            where = setting.flag if config.getoption(setting.dest) else f"ini key {setting.ini}"
            raise pytest.UsageError(f"{where}: {problem}")


def _run_path(config: pytest.Config, setting: Setting) -> Path | None:
    """A run-wide path (flag > ini), relative to the invocation directory."""
    value = config.getoption(setting.dest) or config.getini(setting.ini)
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


def trace_dir(config: pytest.Config) -> Path | None:
    """Where trace files go (flag > ini), relative to the invocation directory."""
    return _run_path(config, TRACE_DIR)


def trace_max_steps(config: pytest.Config) -> int:
    """Most steps a trace file keeps (flag > ini > default)."""
    value = config.getoption(TRACE_MAX_STEPS.dest) or config.getini(TRACE_MAX_STEPS.ini)
    return parse_trace_max_steps(value) if value else DEFAULT_TRACE_MAX_STEPS


def report_path(config: pytest.Config) -> Path | None:
    """Where the claims report goes (flag > ini), relative to the invocation directory."""
    return _run_path(config, REPORT)


def html_path(config: pytest.Config) -> Path | None:
    """Where the HTML report goes (flag > ini), relative to the invocation directory."""
    return _run_path(config, HTML)


def allow_blocking_rules(config: pytest.Config) -> list[str]:
    """Blocking allow-list rules from the ini file, then from the command line
    (``ValueError`` for an empty one given on the command line)."""
    return _rule_lines(config, ALLOW_BLOCKING_INI, ALLOW_BLOCKING_DEST)


def allow_leak_rules(config: pytest.Config) -> list[str]:
    """Leak allow-list rules from the ini file, then from the command line
    (``ValueError`` for an empty one given on the command line)."""
    return _rule_lines(config, ALLOW_LEAKS_INI, ALLOW_LEAKS_DEST)


def _rule_lines(config: pytest.Config, ini: str, dest: str) -> list[str]:
    rules = [str(rule) for rule in config.getini(ini)]
    given = config.getoption(dest) or []
    if any(not rule.strip() for rule in given):
        # A blank line of the ini list is nothing; an empty flag is a slip.
        raise ValueError("an empty rule was given; give a rule, or leave the flag out")
    rules.extend(given)
    return [rule for rule in (r.strip() for r in rules) if rule]


def marker_settings(item: pytest.Item) -> dict[str, object]:
    """The validated keywords of the ``asyncspec`` markers that reach ``item``.

    Markers on the test, its class and its module merge keyword by keyword,
    the nearest winning: a module's ``schedules=`` still applies to a test
    whose own marker sets only ``max_blocking=``.
    """
    values: dict[str, object] = {}
    for marker in item.iter_markers(MARKER):  # nearest first
        where = f"{item.nodeid}: @pytest.mark.{MARKER}"
        if marker.args:
            raise pytest.UsageError(
                f"{where} takes keywords only (e.g. clock='virtual'), "
                f"got positional {marker.args!r}"
            )
        for key, value in marker.kwargs.items():
            setting = MARKER_KEYWORDS.get(key)
            if setting is None:
                raise pytest.UsageError(
                    f"{where}: unknown keyword {key!r}; {did_you_mean(key, MARKER_KEYWORDS)}"
                    f"accepted keywords are {', '.join(MARKER_KEYWORDS)}"
                )
            checked = setting.check(value, where)
            values.setdefault(key, checked)
    return values


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for a close known word, else ``""``."""
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def resolve(config: pytest.Config, marked: dict[str, object]) -> Effective:
    """Each per-test setting's value and where it came from: command line >
    marker (``marked``) > ini > default, with no decision on top (see
    :mod:`.planning`)."""
    chosen: dict[str, object] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if not setting.per_test:
            continue
        flag_value = config.getoption(setting.dest)
        if flag_value is not None:
            chosen[setting.name] = setting.parse(flag_value)
            sources[setting.name] = "command line"
        elif setting.name in marked:
            chosen[setting.name], sources[setting.name] = marked[setting.name], "marker"
        else:
            ini_value: Any = config.getini(setting.ini)
            if ini_value:
                chosen[setting.name], sources[setting.name] = setting.parse(ini_value), "ini"
            else:
                chosen[setting.name] = setting.parse(setting.default)
                sources[setting.name] = "default"
    return Effective(
        clock=cast(ClockChoice, chosen["clock"]),
        loop=cast(LoopChoice, chosen["loop"]),
        max_blocking=cast("float | None", chosen["max_blocking"]),
        hang_after=cast("float | None", chosen["hang_after"]),
        leaks=cast(str, chosen["leaks"]),
        trace=cast(bool, chosen["trace"]),
        schedules=cast(int, chosen["schedules"]),
        strategy=cast(str, chosen["strategy"]),
        depth=cast(int, chosen["depth"]),
        seed=cast("int | None", chosen["seed"]),
        stall_budget=cast("float | None", chosen["stall_budget"]),
        time_budget=cast("float | None", chosen["time_budget"]),
        sources=sources,
    )


def replays_function(test: str, item: pytest.Item) -> bool:
    """Whether a token of the test named ``test`` (``name[param-id]`` for a
    parametrized one) replays a run of ``item``'s function.

    The loop is chosen per function, before its parameters make items:
    pytest-asyncio asks for loop factories with the function's definition,
    whose name has no parameter id.  Every item of the replayed function so
    runs on the clock the replay needs, and says so; only the item the token
    names replays the schedule (:func:`.explored_tests.request_for`).
    """
    function = getattr(item, "originalname", None) or item.name
    return test.partition("[")[0] == function


def replay_token(config: pytest.Config) -> ReplayToken | None:
    """The replay token given for this run (flag or ini key), decoded once;
    a token that cannot be used is a usage error naming where it came from."""
    run = run_state(config)
    if not run.replay_is_read():
        token = None
        text = config.getoption(REPLAY.dest) or config.getini(REPLAY.ini)
        if text:
            from ..exploration.replay_token import ReplayToken, TokenError

            try:
                token = ReplayToken.decode(str(text))
            except TokenError as error:
                where = REPLAY.flag if config.getoption(REPLAY.dest) else REPLAY.ini
                raise pytest.UsageError(f"{where}: {error}") from None
        run.replay = token
    return run.replay
