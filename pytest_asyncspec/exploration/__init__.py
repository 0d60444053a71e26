"""Schedule exploration: the exploring loop, its strategies, the explorer
with its shrinking and determinism check, replay tokens, and the words that
explain a failing schedule.

As a namespace, this package offers exploration's public names but
``explore``, ``replay`` and ``ReplayMismatchError``, which are at the top
level; nothing is imported until a name is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import namespace

if TYPE_CHECKING:  # each name re-exported explicitly (X as X): typed for users
    from .deviation import (
        Deviation as Deviation,
    )
    from .explorer import (
        Exploration as Exploration,
        Explorer as Explorer,
        Failure as Failure,
    )
    from .exploring_loop import (
        ExploringLoop as ExploringLoop,
    )
    from .replay_token import (
        ReplayToken as ReplayToken,
        TokenError as TokenError,
    )
    from .strategies import (
        PctChooser as PctChooser,
        pct_bound as pct_bound,
    )

#: Public name -> the module (under pytest_asyncspec) that defines it.
_HOMES = {
    "Deviation": "exploration.deviation",
    "Exploration": "exploration.explorer",
    "Explorer": "exploration.explorer",
    "Failure": "exploration.explorer",
    "ExploringLoop": "exploration.exploring_loop",
    "ReplayToken": "exploration.replay_token",
    "TokenError": "exploration.replay_token",
    "PctChooser": "exploration.strategies",
    "pct_bound": "exploration.strategies",
}

#: Names of the module this package replaced (``exploration.py``, before
#: 0.2) that are at the top level now.
_MOVED = dict.fromkeys(("ReplayMismatchError", "explore", "replay"), "")

__all__ = sorted(_HOMES)

if not TYPE_CHECKING:  # type checkers see the imports above, with their types
    __getattr__, __dir__ = namespace(__name__, _HOMES, _MOVED)
