"""Exception notes on every supported Python.

``BaseException.add_note`` is new in 3.11. On 3.10 the same note is kept the
way PEP 678 defines it, in the exception's ``__notes__`` list, which pytest
shows there too (through the ``exceptiongroup`` backport it depends on).
"""

from __future__ import annotations


def add_note(error: BaseException, note: str) -> None:
    """Add ``note`` under ``error``, as ``error.add_note(note)`` does on 3.11+."""
    adder = getattr(error, "add_note", None)
    if adder is not None:
        adder(note)
        return
    notes = getattr(error, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        try:
            error.__notes__ = notes  # type: ignore[attr-defined]
        except AttributeError:  # an exception type that refuses new attributes
            return
    notes.append(note)
