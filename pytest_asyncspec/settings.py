"""The plugin's settings: one place that reads options, ini keys and markers.

Every setting has a command-line flag ``--asyncspec-NAME``, an ini key
``asyncspec_NAME`` and a keyword of the ``asyncspec`` marker.  Precedence is
command line > marker > ini > default, so ``--asyncspec-clock=real`` re-runs a
whole virtual-clock suite on the real clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from .loops import CLOCK_CHOICES, LOOP_CHOICES, ClockChoice, LoopChoice

MARKER = "asyncspec"
CLAIM_MARKER = "claim"
CLAIM_HELP = (
    f"{CLAIM_MARKER}(id): tags a test as the executable form of a documented "
    "claim, e.g. @pytest.mark.claim('S0.3')"
)


@dataclass(frozen=True)
class Setting:
    name: str
    choices: tuple[str, ...]
    default: str
    help: str

    @property
    def flag(self) -> str:
        return f"--asyncspec-{self.name}"

    @property
    def ini(self) -> str:
        return f"asyncspec_{self.name}"

    @property
    def dest(self) -> str:
        return f"asyncspec_{self.name}"


CLOCK = Setting(
    "clock",
    CLOCK_CHOICES,
    "real",
    "clock for async tests: 'virtual' (sleeps and timeouts take no real time, "
    "timings exact) or 'real' (the stock loop, untouched)",
)
LOOP = Setting(
    "loop",
    LOOP_CHOICES,
    "asyncio",
    "event loop for async tests: 'asyncio' or 'uvloop' (uvloop needs the real clock)",
)
SETTINGS: tuple[Setting, ...] = (CLOCK, LOOP)
MARKER_KEYWORDS = {setting.name: setting for setting in SETTINGS}
MARKER_HELP = (
    f"{MARKER}(clock='virtual'|'real', loop='asyncio'|'uvloop'): "
    "per-test pytest-asyncspec settings (command-line flags still win)"
)


@dataclass(frozen=True)
class Effective:
    clock: ClockChoice
    loop: LoopChoice
    sources: dict[str, str]


def _check(setting: Setting, value: object, where: str) -> str:
    if value not in setting.choices:
        raise pytest.UsageError(
            f"{where}: invalid {setting.name} {value!r}; expected one of "
            f"{', '.join(repr(c) for c in setting.choices)}"
        )
    return str(value)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncspec", "pytest-asyncspec: virtual time and timing checks")
    for setting in SETTINGS:
        group.addoption(
            setting.flag,
            dest=setting.dest,
            default=None,
            metavar="|".join(setting.choices),
            help=f"{setting.help}. Overrides the ini key and markers.",
        )
        # An empty default tells "not set" apart from "set to the default value",
        # so the report header can say where a value came from.
        parser.addini(
            setting.ini,
            help=f"{setting.help} (default: {setting.default})",
            default="",
        )


def validate_config(config: pytest.Config) -> None:
    """Reject bad flag and ini values before any test is collected."""
    for setting in SETTINGS:
        flag_value = config.getoption(setting.dest)
        if flag_value is not None:
            _check(setting, flag_value, setting.flag)
        ini_value = config.getini(setting.ini)
        if ini_value:
            _check(setting, ini_value, f"ini key {setting.ini}")
    effective_global(config)  # a bad combination (virtual on uvloop) fails here too


def marker_settings(item: pytest.Item) -> dict[str, str]:
    """The validated keywords of the closest ``asyncspec`` marker."""
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return {}
    where = f"{item.nodeid}: @pytest.mark.{MARKER}"
    if marker.args:
        raise pytest.UsageError(
            f"{where} takes keywords only (e.g. clock='virtual'), got positional {marker.args!r}"
        )
    values: dict[str, str] = {}
    for key, value in marker.kwargs.items():
        setting = MARKER_KEYWORDS.get(key)
        if setting is None:
            raise pytest.UsageError(
                f"{where}: unknown keyword {key!r}; accepted keywords are "
                f"{', '.join(MARKER_KEYWORDS)}"
            )
        values[key] = _check(setting, value, where)
    return values


def _resolve(config: pytest.Config, marked: dict[str, str]) -> Effective:
    chosen: dict[str, str] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        flag_value = config.getoption(setting.dest)
        if flag_value is not None:
            chosen[setting.name], sources[setting.name] = flag_value, "command line"
        elif setting.name in marked:
            chosen[setting.name], sources[setting.name] = marked[setting.name], "marker"
        else:
            ini_value: Any = config.getini(setting.ini)
            if ini_value:
                chosen[setting.name], sources[setting.name] = ini_value, "ini"
            else:
                chosen[setting.name], sources[setting.name] = setting.default, "default"
    return Effective(
        clock=cast(ClockChoice, chosen["clock"]),
        loop=cast(LoopChoice, chosen["loop"]),
        sources=sources,
    )


def effective_global(config: pytest.Config) -> Effective:
    """Settings that apply to a test with no marker."""
    effective = _resolve(config, {})
    if effective.clock == "virtual" and effective.loop == "uvloop":
        raise pytest.UsageError(_virtual_uvloop_message(effective.sources))
    return effective


def effective_for(config: pytest.Config, item: pytest.Item) -> Effective:
    """Settings for one test: command line > marker > ini > default."""
    return _resolve(config, marker_settings(item))


def _virtual_uvloop_message(sources: dict[str, str]) -> str:
    return (
        f"the virtual clock (from {sources['clock']}) cannot run on uvloop "
        f"(from {sources['loop']}): uvloop keeps its timers in C. Add "
        "--asyncspec-clock=real to run on uvloop, or drop --asyncspec-loop=uvloop "
        "to keep the virtual clock."
    )
