"""Allow-list rules: the places where blocking the loop is accepted.

Parsed when the run starts (a bad rule is a usage error before any test),
and :func:`allowing_rule` decides which rule, if any, allows a blocking
step from the frames :mod:`.blocking` caught.  The leak allow-list uses the
same rules on a task's own places instead (:func:`first_match`).  Kept apart from it so that
reading the rules loads neither the tracer nor the watchdog.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .blocking import FrameSite

_ACCEPTED_RULES = (
    "accepted forms: 'path/glob.py' (every line of matching files), "
    "'path/glob.py:LINE' (one line), 'module.function' or 'module.Class.method' "
    "(a function; globs allowed, e.g. 'mypkg.db.*')"
)

_FUNCTION_RULE = re.compile(r"[\w*?\[\]<>]+(?:\.[\w*?\[\]<>]+)+")


class AllowRule:
    """A place where blocking is accepted, parsed from text.

    * ``path/glob.py`` -- any line of a file whose path ends with the glob
      (``fnmatch`` rules; matched at a ``/`` boundary, or in full when absolute);
    * ``path/glob.py:LINE`` -- one line of such a file;
    * ``module.function`` / ``module.Class.method`` -- a function, by the
      module's ``__name__`` and the qualified name, globs allowed
      (``mypkg.db.*``).  On Python 3.10 code objects do not know their class,
      so there the class part is not checked.

    A rule allows a blocking step only near the call that blocked: see
    :func:`allowing_rule`.  ``hits`` counts the events a rule allowed (shared
    by every watchdog given the rule), so rules that never fire can be
    reported at the end of a run.
    """

    __slots__ = ("hits", "kind", "line", "pattern", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ValueError(
                f"invalid blocking allow rule {text!r}: not a string; {_ACCEPTED_RULES}"
            )
        self.text = text
        self.hits = 0
        stripped = text.strip()
        if not stripped:
            raise ValueError(
                f"invalid blocking allow rule {text!r}: it is empty; {_ACCEPTED_RULES}"
            )
        path, line = stripped, None
        head, colon, tail = stripped.rpartition(":")
        # A colon followed by a path separator is a Windows drive, not a line.
        if colon and "/" not in tail and "\\" not in tail:
            if not tail.isdigit() or int(tail) < 1:
                dotted = f"{head}.{tail}"
                guess = f"did you mean {dotted!r}? " if _FUNCTION_RULE.fullmatch(dotted) else ""
                raise ValueError(
                    f"invalid blocking allow rule {text!r}: the line after ':' must be a "
                    f"positive whole number, got {tail!r}; {guess}{_ACCEPTED_RULES}"
                )
            path, line = head, int(tail)
        self.line: int | None = line
        looks_like_file = "/" in path or "\\" in path or path.endswith(".py")
        if line is not None and not looks_like_file:
            raise ValueError(
                f"invalid blocking allow rule {text!r}: a ':LINE' needs a file path before it "
                f"(with '/' or ending in '.py'); {_ACCEPTED_RULES}"
            )
        if looks_like_file:
            self.kind: Literal["path", "function"] = "path"
            self.pattern = os.path.normcase(path).replace("\\", "/")
        elif _FUNCTION_RULE.fullmatch(path):
            self.kind = "function"
            self.pattern = path
        else:
            raise ValueError(
                f"invalid blocking allow rule {text!r}: neither a file path (with '/' or "
                f"ending in '.py') nor a dotted 'module.function' name; {_ACCEPTED_RULES}"
            )

    @property
    def used(self) -> bool:
        return self.hits > 0

    def matches(self, frame: FrameSite) -> bool:
        if self.kind == "path":
            if self.line is not None and frame.lineno != self.line:
                return False
            filename = os.path.normcase(frame.filename).replace("\\", "/")
            return fnmatch.fnmatchcase(filename, self.pattern) or fnmatch.fnmatchcase(
                filename, "*/" + self.pattern
            )
        if not frame.module:
            return False
        if fnmatch.fnmatchcase(f"{frame.module}.{frame.function}", self.pattern):
            return True
        if sys.version_info < (3, 11):
            # Only the bare function name is known: accept 'module.Class.name'.
            prefix, _, name = self.pattern.rpartition(".")
            return fnmatch.fnmatchcase(frame.function, name) and fnmatch.fnmatchcase(
                prefix, f"{frame.module}.*"
            )
        return False

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"AllowRule({self.text!r}, hits={self.hits})"


def parse_allow_rules(texts: Iterable[str]) -> list[AllowRule]:
    """Parse allow rules (``ValueError`` on the first bad one); blank entries are skipped."""
    return [AllowRule(text) for text in texts if text.strip()]


def allowing_rule(rules: Sequence[AllowRule], frames: Sequence[FrameSite]) -> AllowRule | None:
    """The rule that allows a blocking step whose stack is ``frames``
    (outermost first, as caught while it blocked), or None.

    Only the frames that made the blocking call count: the innermost one,
    then outward through library frames (stdlib, installed packages) up to
    and including the first frame of the user's own code.  A rule naming a
    frame further out -- a framework's request dispatcher, the user's own
    caller of a helper -- would otherwise allow everything below it, and the
    gate would go silent for a whole application.  With no frames (the
    blocking frame was never caught) nothing is allowed: a rule can only
    vouch for a place it has seen.  Rules are tried innermost frame first,
    and in their own order on one frame.
    """
    for frame in reversed(frames):
        for rule in rules:
            if rule.matches(frame):
                return rule
        if not frame.library:
            return None
    return None


def first_match(rules: Iterable[AllowRule], sites: Iterable[FrameSite]) -> AllowRule | None:
    """The first rule that matches any of ``sites``, counted as a hit.

    For the leak allow-list: ``sites`` are the places that name one leaked
    task or dropped coroutine (its coroutine's function, the line that
    created it), not a stack, so any of them may match.  A blocking step's
    stack is judged by :func:`allowing_rule` instead, which reads only the
    frames near the blocking call.
    """
    places = tuple(sites)
    for rule in rules:
        if any(rule.matches(site) for site in places):
            rule.hits += 1
            return rule
    return None


def parse_leak_rules(texts: Iterable[str]) -> list[AllowRule]:
    """Parse the rules of the leak allow-list: the same forms as blocking
    rules, naming a task's coroutine (``module.function``) or the file and
    line that created it (``ValueError`` on the first bad one)."""
    try:
        return parse_allow_rules(texts)
    except ValueError as error:
        # The parser's words are the blocking list's; the rule is the same.
        raise ValueError(str(error).replace("blocking allow rule", "leak allow rule")) from None
