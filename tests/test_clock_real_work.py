"""Real work on the virtual clock: never overtaken by a jump, and no false timeouts.

While something outside the loop owes it an event (a server in another thread,
an executor job, a subprocess) the clock flows at real speed instead of jumping
to the next timer; peers served by the same loop do not hold time back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
from real_work_helpers import serving_in_a_thread

from pytest_asyncspec import DeadlockError, VirtualClockLoop
from pytest_asyncspec.clock import time_patch

if TYPE_CHECKING:
    from conftest import RunVirtual

#: Real seconds the threaded server waits before it answers.
REPLY_DELAY = 0.3


# -- a real server in another thread ---------------------------------------------


class _SlowReplyHandler(socketserver.StreamRequestHandler):
    timeout = 5.0  # a client that never sends cannot hold the server thread

    def handle(self) -> None:
        request = self.rfile.readline()
        # This thread runs no virtual loop, so time.sleep here is a real sleep.
        time.sleep(REPLY_DELAY)
        self.wfile.write(b"pong " + request)


class _SlowReplyServer(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowReplyHandler)
        self.errors: list[BaseException | None] = []

    def handle_error(self, request: object, client_address: object) -> None:
        self.errors.append(sys.exc_info()[1])

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


def _server_thread() -> contextlib.AbstractContextManager[_SlowReplyServer]:
    """A loopback server answering from its own thread, always stopped on exit."""
    return serving_in_a_thread(_SlowReplyServer(), name="slow-reply-server")


def test_reply_from_a_server_thread_is_not_overtaken_by_timers(run_virtual: RunVirtual) -> None:
    """A server in another thread answers after 0.3 real seconds: the reply arrives
    under a 10 s timeout, the clock runs at real speed meanwhile (about 0.3 s of
    virtual time), and a 60 s timer elsewhere does not fire first."""

    async def exchange(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"ping\n")
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()

    async def main(port: int) -> tuple[bytes, float, list[str], float]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far_timer = loop.call_later(60, fired.append, "60 s timer")
        started = loop.time()
        reply = await asyncio.wait_for(exchange(port), 10)
        elapsed = loop.time() - started
        far_timer.cancel()
        return reply, elapsed, fired, loop.time()

    with _server_thread() as server:
        reply, elapsed, fired, ended_at = run_virtual(lambda: main(server.port))

    assert server.errors == []
    assert reply == b"pong ping\n"
    assert fired == []
    assert ended_at < 60
    # The server slept 0.3 real seconds before answering while the loop waited at
    # real speed (a jump would have meant 10 s or 60 s). The clock counts only the
    # time the loop spends waiting, not its own compute, hence "about" 0.3 s.
    assert 0.25 <= elapsed < 5.0


# -- executor jobs ---------------------------------------------------------------


def test_executor_job_is_not_overtaken_by_its_timeout(run_virtual: RunVirtual) -> None:
    """``run_in_executor(None, time.sleep, 0.2)`` under a 9 s ``wait_for`` completes
    without a false timeout; the clock flows at real speed while the job runs, so
    about 0.2 s of virtual time passes, and a 60 s timer does not fire."""

    async def main() -> tuple[object, float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far_timer = loop.call_later(60, fired.append, "60 s timer")
        started = loop.time()
        # time.sleep is looked up now (the patched function) and runs on a
        # worker thread, where it is a real sleep.
        result = await asyncio.wait_for(loop.run_in_executor(None, time.sleep, 0.2), 9)
        elapsed = loop.time() - started
        far_timer.cancel()
        return result, elapsed, fired

    result, elapsed, fired = run_virtual(main)

    assert result is None
    assert fired == []
    # Virtual time follows real time from the moment the job was submitted, so
    # the job's 0.2 real seconds are all seen.
    assert 0.2 <= elapsed < 9


def test_to_thread_is_tracked_like_an_executor_job(run_virtual: RunVirtual) -> None:
    """``asyncio.to_thread`` work (0.1 real seconds) beats a 5 s timeout and returns
    its result; the thread saw a real sleep, the loop a real-speed wait."""

    def work() -> str:
        time.sleep(0.1)
        return threading.current_thread().name

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        name = await asyncio.wait_for(asyncio.to_thread(work), 5)
        return name, loop.time() - started

    thread_name, elapsed = run_virtual(main)

    assert thread_name != threading.current_thread().name
    assert 0.05 <= elapsed < 5


# -- peers on the same loop ------------------------------------------------------


@pytest.mark.timeout(10)  # 30 s of real time would mean the clock did not jump
def test_client_and_server_on_the_same_loop_let_the_clock_jump(run_virtual: RunVirtual) -> None:
    """A loopback server and its client both on the virtual loop: the handler's 30 s
    sleep is jumped over, and the reply reaches the client exactly 30 s (to the
    nanosecond) after the request; a real-speed wait could not be that exact."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            await asyncio.sleep(30)
            writer.write(b"late " + request)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def main() -> tuple[bytes, int, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                sent_at = loop.virtual_ticks()
                writer.write(b"ping\n")
                await writer.drain()
                reply = await reader.readline()
                ticks = loop.virtual_ticks() - sent_at
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()
        return reply, ticks, loop.time()

    reply, ticks, ended_at = run_virtual(main)

    assert reply == b"late ping\n"
    assert ticks == 30_000_000_000
    assert ended_at == 30.0


def test_a_client_that_paused_reading_is_still_this_loops_peer(run_virtual: RunVirtual) -> None:
    """A pooled client connection at rest stops reading (httpx does so between
    requests), so its socket leaves the selector; the server's end must still
    count as talking to this loop, and a 1 s sleep meanwhile is a jump, ending
    at 1 s to the nanosecond (flowing at real speed, it ended a little later)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
        finally:
            writer.close()

    async def main() -> int:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await asyncio.sleep(0)
            writer.transport.pause_reading()  # type: ignore[attr-defined]
            await asyncio.sleep(1)
            ticks = loop.virtual_ticks()
        finally:
            writer.close()
            server.close()
            await server.wait_closed()
        return ticks

    assert run_virtual(main) == 1_000_000_000


# -- subprocesses ----------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="selector loops cannot run subprocesses")
def test_subprocess_output_and_exit_are_not_overtaken(run_virtual: RunVirtual) -> None:
    """A child process that prints, closes its output and exits 0.3 real seconds
    later: its output and exit status arrive under a 10 s timeout, the clock flows
    at real speed until the exit, and a 60 s timer does not fire first."""
    script = "import os, time; print('child done', flush=True); os.close(1); time.sleep(0.3)"

    async def main() -> tuple[bytes, int | None, list[str], float]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far_timer = loop.call_later(60, fired.append, "60 s timer")
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 10)
        finally:
            # Reap the child whatever happened, so no transport is left open.
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        far_timer.cancel()
        return output, process.returncode, fired, loop.time() - started

    output, returncode, fired, elapsed = run_virtual(main)

    assert (output, returncode) == (b"child done\n", 0)
    assert fired == []
    assert 0.25 <= elapsed < 10


# -- executor shutdown -----------------------------------------------------------


class _SlowShutdownExecutor(ThreadPoolExecutor):
    """An executor whose workers take 0.2 real seconds to wind down."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait:
            time.sleep(0.2)  # called on asyncio's shutdown thread: a real sleep
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def test_executor_shutdown_under_a_timeout_is_not_overtaken(run_virtual: RunVirtual) -> None:
    """Waiting for the default executor to shut down (0.2 real seconds) under a 300 s
    timeout, as ``asyncio.Runner.close`` does on Python 3.13, completes instead of
    being jumped over."""

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(_SlowShutdownExecutor())
        await loop.run_in_executor(None, time.sleep, 0.01)
        started = loop.time()
        try:
            await asyncio.wait_for(loop.shutdown_default_executor(), 300)
        except asyncio.TimeoutError:
            return "timed out", loop.time() - started
        return "shut down", loop.time() - started

    outcome, elapsed = run_virtual(main)

    assert outcome == "shut down", f"{outcome} after {elapsed} virtual seconds"
    assert elapsed < 300


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is new in 3.11")
def test_runner_closes_cleanly_after_an_executor_job() -> None:
    """The documented way to use the loop without pytest,
    ``asyncio.Runner(loop_factory=VirtualClockLoop)``, closes without a warning or
    error after code used the default executor (whose workers take 0.2 real
    seconds to wind down)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(_SlowShutdownExecutor())
        await loop.run_in_executor(None, time.sleep, 0.01)
        return loop.time()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        assert runner.run(main()) >= 0.0


def test_a_timed_out_job_still_running_is_not_a_deadlock(run_virtual: RunVirtual) -> None:
    """After ``wait_for`` gives up on an executor job at 0.1 s, the job keeps running
    on its worker thread (here until it is released a real second later); shutting
    the executor down waits for it instead of being reported as a deadlock."""
    release = threading.Event()

    def job() -> None:
        release.wait(timeout=10)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.run_in_executor(None, job), 0.1)
        releaser = threading.Timer(1.0, release.set)
        releaser.start()
        try:
            started = loop.time()
            await loop.shutdown_default_executor()
            return loop.time() - started
        finally:
            release.set()
            releaser.cancel()
            releaser.join()

    try:
        # A short grace: the job outlives it by far, so the outcome cannot
        # depend on how loaded the machine is.
        waited = run_virtual(main, deadlock_grace=0.1)
    except DeadlockError as error:
        raise AssertionError(f"reported as a deadlock: {error}") from error
    finally:
        release.set()
    assert 0.5 <= waited < 5


# -- what real time is charged to the virtual clock ---------------------------------


def _spin(seconds: float) -> None:
    """Compute on the calling thread for ``seconds`` of real time (pure Python, so
    other threads get the GIL at the usual switch interval)."""
    end = time_patch.real_monotonic() + seconds
    while time_patch.real_monotonic() < end:
        pass


def test_compute_after_submitting_a_job_is_not_charged(run_virtual: RunVirtual) -> None:
    """Submit a 0.01 s job, compute for 0.5 real seconds on the loop thread, then
    await the job under a 0.1 s timeout: the loop's own compute takes no virtual
    time, so the job is on time (as on asyncio's own loop) and under 0.1 s of
    virtual time has passed."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = loop.run_in_executor(None, time.sleep, 0.01)
        _spin(0.5)
        await asyncio.wait_for(job, 0.1)
        return loop.time() - started

    assert run_virtual(main) < 0.1


def test_compute_while_a_job_waits_to_start_its_work_is_not_charged(
    run_virtual: RunVirtual,
) -> None:
    """A job that waits for a gate, then works 0.01 s: the loop submits it,
    computes for 0.5 real seconds, opens the gate and awaits the job under a
    0.1 s timeout. The loop's compute is not charged (a real-time mark set at
    submission made it a false timeout): the job is on time, as on asyncio's
    own loop."""
    gate = threading.Event()

    def job() -> None:
        gate.wait(5)
        time.sleep(0.01)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        future = loop.run_in_executor(None, job)
        _spin(0.5)
        gate.set()
        await asyncio.wait_for(future, 0.1)
        return loop.time() - started

    try:
        assert run_virtual(main) < 0.1
    finally:
        gate.set()


def test_compute_between_two_jobs_is_not_charged_to_the_second(run_virtual: RunVirtual) -> None:
    """A first job finishes, the loop computes for 0.5 real seconds, then a 0.01 s
    job runs under a 0.1 s timeout: the compute is not carried over to the
    second job (a real-time mark left by the first made it a false timeout)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, time.sleep, 0.01)
        _spin(0.5)
        started = loop.time()
        await asyncio.wait_for(loop.run_in_executor(None, time.sleep, 0.01), 0.1)
        return loop.time() - started

    assert run_virtual(main) < 0.1


def test_a_job_never_looks_faster_than_it_really_ran(run_virtual: RunVirtual) -> None:
    """Jobs of 0.3 s awaited at once (the first starts a worker thread, the others
    reuse it): each takes at least 0.3 s of virtual time, every time."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        took = []
        for _ in range(3):
            started = loop.time()
            await loop.run_in_executor(None, time.sleep, 0.3)
            took.append(loop.time() - started)
        return took

    took = run_virtual(main)
    assert all(0.3 <= t < 5 for t in took), took


def test_a_blocking_sleep_while_a_job_runs_lets_the_job_finish(run_virtual: RunVirtual) -> None:
    """``time.sleep(1.0)`` on the loop thread while a 0.3 s job runs: the clock
    moves by exactly 1 s, the sleep is real (real work is in flight, as on
    asyncio's own loop), so the job, finished meanwhile, is seen done at once
    under a 0.1 s timeout, at exactly 1 s."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        real_start = time_patch.real_monotonic()
        started = loop.time()
        job = loop.run_in_executor(None, time.sleep, 0.3)
        await asyncio.sleep(0)
        time.sleep(1.0)
        await asyncio.wait_for(job, 0.1)
        return loop.time() - started, time_patch.real_monotonic() - real_start

    virtual, real = run_virtual(main)
    assert virtual == 1.0
    assert real >= 1.0


def test_timers_due_beside_a_job_fire_at_their_exact_tick(run_virtual: RunVirtual) -> None:
    """Sleeps of 0.2 s (one after another) beside a 1 s executor job wake at
    exactly 0.2, 0.4, 0.6 and 0.8 s (real flow stops at a due timer), and the
    job still takes at least its real second."""

    async def ticker(woke: list[int]) -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        for _ in range(4):
            await asyncio.sleep(0.2)
            woke.append(loop.virtual_ticks())

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        assert loop.time() == 0.0
        woke: list[int] = []
        job = loop.run_in_executor(None, time.sleep, 1.0)
        await asyncio.gather(ticker(woke), job)
        return woke, loop.time()

    woke, ended = run_virtual(main)
    assert woke == [200_000_000, 400_000_000, 600_000_000, 800_000_000]
    assert 1.0 <= ended < 5


def test_a_far_timer_beside_a_job_does_not_break_the_wait(run_virtual: RunVirtual) -> None:
    """A timer a hundred million seconds ahead beside a 0.05 s job: the loop waits
    for the job (a poll timeout that long is capped, as asyncio caps it) and the
    timer does not fire."""

    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        far = loop.call_later(1e8, fired.append, "far")
        started = loop.time()
        await loop.run_in_executor(None, time.sleep, 0.05)
        far.cancel()
        return loop.time() - started, fired

    took, fired = run_virtual(main)
    assert fired == []
    assert 0.05 <= took < 5


def test_real_flow_ticks_count_the_real_time_charged(run_virtual: RunVirtual) -> None:
    """``real_flow_ticks()`` grows by the real time charged while work is in flight
    and not at all across virtual sleeps."""

    async def main() -> tuple[int, int, int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        first = loop.real_flow_ticks()
        await asyncio.sleep(5)
        second = loop.real_flow_ticks()
        before = loop.virtual_ticks()
        await loop.run_in_executor(None, time.sleep, 0.05)
        third = loop.real_flow_ticks()
        return first, second, third - second, loop.virtual_ticks() - before

    first, second, flowed, moved = run_virtual(main)
    assert first == second == 0
    assert moved >= 50_000_000
    assert flowed == moved


# -- subprocesses hold time until their exit is reported ---------------------------


class _ExitProtocol(asyncio.SubprocessProtocol):
    def __init__(self, exited: asyncio.Future[None]) -> None:
        self.exited = exited

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


@pytest.mark.skipif(sys.platform == "win32", reason="selector loops cannot run subprocesses")
def test_a_childs_real_duration_is_never_under_counted(run_virtual: RunVirtual) -> None:
    """``await proc.wait()`` on a child that sleeps 0.5 s takes at least 0.5 s of
    virtual time, and a task sleeping 60 s meanwhile is not woken first."""

    async def main() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.ensure_future(asyncio.sleep(60))
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(0.5)"
        )
        await proc.wait()
        took = loop.time() - started
        done = sleeper.done()
        sleeper.cancel()
        return took, done

    took, sleeper_done = run_virtual(main)
    assert not sleeper_done
    assert 0.5 <= took < 10


@pytest.mark.skipif(sys.platform == "win32", reason="selector loops cannot run subprocesses")
@pytest.mark.parametrize("how", ["kill", "close"])
def test_a_killed_childs_exit_is_awaited_in_real_time(run_virtual: RunVirtual, how: str) -> None:
    """A child killed by ``kill()`` or by closing its transport (which kills it)
    still holds time until its exit is reported: the exit arrives before a 60 s
    timer elsewhere, in a moment of real time."""

    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.subprocess_exec(
            lambda: _ExitProtocol(exited), sys.executable, "-c", "import time; time.sleep(30)"
        )
        try:
            fired: list[str] = []
            far = loop.call_later(60, fired.append, "60 s timer")
            await asyncio.sleep(0.1)
            started = loop.time()
            if how == "kill":
                transport.kill()
            else:
                transport.close()
            await exited
            far.cancel()
            return loop.time() - started, fired
        finally:
            transport.close()

    took, fired = run_virtual(main)
    assert fired == []
    assert 0 < took < 10


def test_real_flow_ticks_never_exceed_the_time_the_clock_moved(run_virtual: RunVirtual) -> None:
    """A job that ran partly while the loop computed is delivered late (at its
    submission plus its real running time); when a second job keeps time
    flowing until that delivery, the flow must not be counted twice: real
    work in a span is never more than the span itself."""

    def spin(seconds: float) -> None:
        end = time_patch.real_monotonic() + seconds
        while time_patch.real_monotonic() < end:
            pass

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        flow_before, ticks_before = loop.real_flow_ticks(), loop.virtual_ticks()
        short = loop.run_in_executor(None, time.sleep, 0.3)
        spin(0.2)  # the loop computes while the short job runs
        long = loop.run_in_executor(None, time.sleep, 1.0)  # keeps time flowing
        await short
        await long
        return loop.real_flow_ticks() - flow_before, loop.virtual_ticks() - ticks_before

    flowed, moved = run_virtual(main)
    assert moved >= 1_000_000_000
    assert flowed <= moved
