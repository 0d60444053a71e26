"""Replay tokens: one schedule of one test, as plain text.

A token reads ``asyncspec1:<plugin version>:<test>:<strategy>:<seed>:<deviations>``.
The deviations alone fix the schedule (FIFO everywhere else); the strategy
and seed say where it came from, so "the same seed again" can be checked.
Each deviation is ``<label>@<step>=<label>``: when the first label's step
was the oldest ready callback, the second ran instead; ``-`` means none.
Fields are percent-encoded, so a token is one shell word that needs no
quoting.  Never pickle, never code: decoding only parses text.

A token names the plugin version that made it, because what a seed or a
label means may change between versions; another version refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .deviation import Deviation

FORMAT = "asyncspec1"
_SAFE = ""  # quote everything but letters, digits and _.-~
_DEVIATION = re.compile(r"(?P<instead>[^@=,]+)@(?P<step>\d+)=(?P<ran>[^@=,]+)")
_STRATEGY = re.compile(r"fifo|random|pct\d+")


def plugin_version() -> str:
    # Imported here: importlib.metadata costs milliseconds at pytest start-up.
    from importlib import metadata

    try:
        return metadata.version("pytest-asyncspec")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


class TokenError(ValueError):
    """A replay token that cannot be used: malformed, or from another version."""


@dataclass(frozen=True)
class ReplayToken:
    test: str
    strategy: str
    seed: int
    deviations: tuple[Deviation, ...]
    version: str = ""

    def encode(self) -> str:
        deviations = ",".join(f"{_q(d.instead_of)}@{d.step}={_q(d.ran)}" for d in self.deviations)
        fields = (
            FORMAT,
            _q(self.version or plugin_version()),
            _q(self.test),
            self.strategy,
            str(self.seed),
            deviations or "-",
        )
        return ":".join(fields)

    @classmethod
    def decode(cls, text: str) -> ReplayToken:
        """Parse a token; :class:`TokenError` says what is wrong with a bad one."""
        text = text.strip()
        fields = text.split(":")
        if not fields or fields[0] != FORMAT:
            raise TokenError(
                f"not an asyncspec replay token: {_clip(text)!r}; a token starts with "
                f"'{FORMAT}:' and is printed, whole, under a failing explored test"
            )
        if len(fields) != 6:
            raise TokenError(
                f"malformed replay token {_clip(text)!r}: expected 6 ':'-separated fields "
                f"(format, version, test, strategy, seed, deviations), found {len(fields)}; "
                "copy the whole token from the failure report"
            )
        # Here, not at the top: an exploring suite loads this module when it is
        # collected, and urllib.parse costs a few milliseconds to import.
        from urllib.parse import unquote

        _, version, test, strategy, seed, deviations = fields
        version = unquote(version)
        if version != plugin_version():
            raise TokenError(
                f"this replay token was made by pytest-asyncspec {version}, and this is "
                f"{plugin_version()}: a schedule replays exactly only on the version that "
                f"found it. Install pytest-asyncspec=={version} to replay it, or explore "
                "again (--asyncspec-schedules=N) to find the failure afresh"
            )
        if not _STRATEGY.fullmatch(strategy) or not seed.isdigit():
            raise TokenError(
                f"malformed replay token {_clip(text)!r}: strategy {strategy!r} and seed "
                f"{seed!r} should be fifo/random/pctN and a whole number"
            )
        parsed: list[Deviation] = []
        if deviations != "-":
            for part in deviations.split(","):
                match = _DEVIATION.fullmatch(part)
                if match is None:
                    raise TokenError(
                        f"malformed replay token: deviation {part!r} is not "
                        "'<label>@<step>=<label>'; copy the whole token from the failure report"
                    )
                parsed.append(
                    Deviation(unquote(match["instead"]), int(match["step"]), unquote(match["ran"]))
                )
        return cls(unquote(test), strategy, int(seed), tuple(parsed), version)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe=_SAFE)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
