"""Writing the files the plugin makes, without replacing what a path names.

Every file the plugin writes (the claims JSON, the HTML page, trace files)
goes through :func:`write_report`, and every path given for one is checked
at start-up by :func:`path_problem` or :func:`directory_problem`:

* a regular file, or a new one, is written to a temporary file beside it and
  renamed over it, so no reader sees half a report;
* a symlink is written through: the file it points to is replaced (or
  created), the link stays a link;
* a FIFO or a character device (``/dev/null``, ``/dev/stdout`` on a
  terminal) is written to as a stream, never replaced: a FIFO's write waits
  for a reader, as ``cat > fifo`` does; so is a file named through a
  process's open descriptor (``/dev/stdout`` redirected to a file);
* a directory, a socket or a block device is refused.

Nothing is created before a report is written: a run stopped by a usage
error leaves no directory behind.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

__all__ = ["directory_problem", "path_problem", "write_report"]

_FIX = "give a path in a directory you can write to"


def _refusal(mode: int) -> str | None:
    """Why a report cannot be written to a file of ``mode`` (None: it can)."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISBLK(mode):
        return "is a block device"
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return None
    return "is not a regular file, a FIFO or a character device"


def path_problem(path: Path, what: str) -> str | None:
    """What stops a report (``what``: "an HTML file") being written to
    ``path``, said so that a user knows what to do; None when nothing does.

    Checks without creating anything: the directory a new file needs is made
    when the report is written.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # directory_problem says what is in the way
    except OSError as error:
        return f"cannot use {str(path)!r} ({error.strerror or error}); {_FIX}"
    if mode is not None:
        refusal = _refusal(mode)
        if refusal is not None:
            kinds = "" if stat.S_ISDIR(mode) else ": a new or regular file, a FIFO or /dev/null"
            return f"{str(path)!r} {refusal}; give the path of {what} to write{kinds}"
        if not stat.S_ISREG(mode):
            if not os.access(path, os.W_OK):
                return f"cannot write to {str(path)!r} (permission denied); {_FIX}"
            return None  # written as a stream: its directory is not touched
    # A regular or new file is renamed into place in the directory of the
    # file the path finally names (a symlink's target's).
    return directory_problem(Path(os.path.realpath(path)).parent)


def directory_problem(directory: Path) -> str | None:
    """What stops files being made in ``directory`` (created on first use),
    or None.  Writes a probe file in the nearest directory that exists:
    permission bits alone say nothing for root, or on a read-only or
    virtual file system."""
    existing = next((path for path in (directory, *directory.parents) if path.exists()), None)
    if existing is None:
        return None
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a directory; {_FIX}"
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".asyncspec-probe-"):
            pass
    except OSError as error:
        return f"cannot write in {str(existing)!r} ({error.strerror or error}); {_FIX}"
    return None


def write_report(path: Path, text: str | Iterable[str]) -> None:
    """Write ``text`` (a string, or its pieces in order) to ``path`` as the
    module's docstring says; ``OSError`` when it cannot be written."""
    try:
        status: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        status = None
    if status is not None and not stat.S_ISREG(status.st_mode):
        refusal = _refusal(status.st_mode)
        if refusal is not None:
            raise OSError(errno.EINVAL, f"the path {refusal}; it is not replaced")
        _write_stream(path, text)
        return
    if status is not None and _open_file_link(path):
        # /dev/stdout redirected to a file, /proc/self/fd/N: the file is one a
        # process holds open, written in place as a shell's ">" would.
        _write_stream(path, text)
        return
    _write_atomically(Path(os.path.realpath(path)), text)


def _open_file_link(path: Path) -> bool:
    """Whether ``path`` names a file through a link into /proc (a process's
    open file descriptor), where renaming over the file would unlink it from
    under the process that holds it."""
    name = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        if name.startswith(("/proc/", "/dev/fd/")):
            return True
        try:
            link = os.readlink(name)
        except OSError:
            return False  # not a link (any more): a plain file
        name = os.path.normpath(os.path.join(os.path.dirname(name), link))
    return False


def _write_stream(path: Path, text: str | Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        _put(stream, text)


def _put(stream: TextIO, text: str | Iterable[str]) -> None:
    if isinstance(text, str):
        stream.write(text)
    else:
        stream.writelines(text)


def _write_atomically(path: Path, text: str | Iterable[str]) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent
    )
    try:
        # mkstemp makes the file private (0600); a report is for others to read
        # (CI artifacts), so it gets the mode a plain open() would give.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            _put(file, text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
