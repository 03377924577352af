"""Stop signals: Ctrl-C and SIGTERM end a build the way Ctrl-C does, and reach a child server.

A build treats any KeyboardInterrupt as "stop": `Interrupted` is the KeyboardInterrupt that a
SIGTERM (installed by `raising_on`) raises, so both take one path; `deferred` holds them while a
catalog commit runs so the in-memory accounting always matches what was committed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised as Ctrl-C's KeyboardInterrupt is. A library call that saved its work
    before stopping (`build`) raises it with what it did as `result`."""

    def __init__(self, signum: int, result: Any = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.result = result


def signum_of(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGINT unless it says otherwise."""
    return int(getattr(exc, "signum", signal.SIGINT))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def raising_on(signums: Iterable[int] = (signal.SIGTERM,)) -> Iterator[None]:
    """While the block runs, these signals raise `Interrupted` (a KeyboardInterrupt).

    For command-line faces: a library call then stops on SIGTERM as it does on Ctrl-C.
    """
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_interrupted) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def deferred(signums: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Hold stop signals while the block runs (a commit and its bookkeeping), then deliver the
    first one to whatever handler was installed before: the block is never cut in half."""
    if not _in_main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda n, _f: caught.append(n)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    if caught:  # after an error in the block, the error goes first (and the signal is dropped)
        signal.raise_signal(caught[0])


def ignore_stop_signals(*_args: Any) -> None:
    """For worker processes (e.g. a DataLoader's `worker_init_fn`): the terminal's Ctrl-C reaches
    the whole process group, but the parent decides when workers stop and shuts them down."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class _Forwarded(Exception):
    pass


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` (Linux): the child gets SIGTERM when this process dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at the top: every command imports this module

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def spawn(cmd: Sequence[str], env: dict[str, str], *, own_group: bool = False) -> subprocess.Popen:
    """Start a child that dies with us (Linux: SIGTERM when we die, even by SIGKILL);
    `own_group`: the terminal's Ctrl-C does not reach it (we stop it, once)."""
    return subprocess.Popen(
        list(cmd), env=env, preexec_fn=_die_with_parent(), start_new_session=own_group
    )


def stop_child(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM a child and wait for it to save and exit; killed after `grace` seconds or at
    a second Ctrl-C (what it committed is kept either way)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()


def run_child(cmd: Sequence[str], env: dict[str, str], grace: float = 10.0) -> int:
    """Run a server until it exits; SIGINT, SIGTERM and SIGHUP sent to us are passed on to it
    (SIGHUP as SIGTERM), and a child still running `grace` seconds later is killed.

    Returns the exit code for us: 128 + N after our signal N, else the child's (128 + N when a
    signal N killed it). On Linux the child also dies if we are killed outright.
    """
    proc = spawn(cmd, env)
    received: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)
        raise _Forwarded

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in handled}
    deadline: float | None = None  # set by the first signal we pass on
    try:
        while True:
            try:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:  # still running after the grace period
                    proc.kill()
                    left = None
                code = proc.wait(timeout=left)
                break
            except _Forwarded:
                deadline = deadline or time.monotonic() + grace
            except subprocess.TimeoutExpired:
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
    if received:
        return 128 + received[0]
    return 128 - code if code < 0 else code
