"""Running a child process that may hang, or fork children that outlive it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass


@dataclass
class Finished:
    """How a bounded run ended: its exit status, what it printed, and whether it was cut off."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool


def run_bounded(
    command: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    limit: float,
    capture_stdout: bool = False,
) -> Finished:
    """Run ``command`` in its own session for at most ``limit`` real seconds.

    The session is what makes the clean-up complete: on time-out, and after a
    normal exit too, the whole process group is killed, so a worker a test
    started and never joined (a thread pool's process, a forked server)
    cannot keep running into the next run.
    """
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        return Finished(proc.returncode, stdout or "", stderr or "", timed_out)
