"""What Linux's ``/proc`` says about this process's threads and children.

The virtual clock asks the kernel where Python cannot tell: whether a thread
is runnable, whether a child still runs, which children a thread forked.
Every reading answers "unknown" (``None`` or empty) off Linux or when the
thread or process is gone, and callers treat that as the safe answer.
"""

from __future__ import annotations

import threading


def stat_state(path: str) -> bytes | None:
    """The one-letter state (``R``, ``S``, ``Z`` ...) of a ``/proc/.../stat`` file."""
    try:
        with open(path, "rb") as stat:
            fields = stat.read()
    except OSError:  # not Linux, or the thread or process is gone
        return None
    # The command name, in parentheses, may hold spaces: the state follows
    # the last closing parenthesis.
    after = fields.rfind(b")") + 2
    return fields[after : after + 1] or None


def children_of_this_thread() -> set[int]:
    """Pids of the live children forked by the calling thread."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/children", "rb") as listing:
            return {int(pid) for pid in listing.read().split()}
    except OSError:  # no /proc, or a kernel without the children list
        return set()
