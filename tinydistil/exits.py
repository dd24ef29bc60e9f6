"""How a command ends when it cannot finish: one line and an exit code (2 bad input, 3 an operating-system error,
128 + N on signal N: Ctrl-C 130, SIGTERM 143, SIGHUP 129), never a traceback unless TINYDISTIL_DEBUG=1."""
from __future__ import annotations

import contextlib
import signal
import sys


def os_error_line(e: OSError) -> str:
    """An operating-system error as one line naming the path and the fix."""
    import errno

    where = f" ({e.filename})" if e.filename else ""
    fix = {errno.ENOSPC: "the disk is full: free space, then continue a run with --resume",
           errno.EDQUOT: "the disk quota is full: free space, then continue a run with --resume",
           errno.EACCES: "no permission to write there: choose another path",
           errno.EPERM: "the file or folder may not be changed (read-only or immutable): choose another path",
           errno.EROFS: "the filesystem is read-only: choose another path",
           errno.ENOTDIR: "a file is in the way of that folder: choose another path",
           errno.EISDIR: "a folder is in the way of that file: choose another path",
           errno.EEXIST: "something is already there: choose another path"}.get(
        e.errno, "check the path, free space and permissions; a run continues from its last checkpoint with --resume")
    return f"{e.strerror or e}{where}: {fix}"


class Signalled(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (a `kill`, a closed terminal or session): finished work is kept."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_pending: list[int] = []  # signals received inside signals_as_interrupts, newest last


def _raise_signalled(signum, frame):
    _pending.append(signum)
    raise Signalled(signum)


def raise_pending() -> None:
    """Raise again a signal whose exception Python swallowed. A signal's handler runs in whatever Python code
    the main thread is executing; when that is a __del__ (a progress bar garbage-collected) or a callback,
    Python only prints the exception and carries on, and Ctrl-C would be lost. The long loops (each training and
    fine-tuning update) and each study stage call this, so the command stops there instead, one update later.
    Outside signals_as_interrupts (a notebook) nothing is recorded and this does nothing."""
    if _pending:
        raise Signalled(_pending[-1])


def _quiet_swallowed_interrupt(unraisable, default=sys.unraisablehook):
    """The unraisable hook inside signals_as_interrupts: a swallowed interrupt prints nothing (raise_pending
    raises it again where it can end the command in one line); anything else is printed as Python does."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        default(unraisable)


@contextlib.contextmanager
def signals_as_interrupts():
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP raise Signalled (a KeyboardInterrupt) in the block (or the function it
    decorates), so training stops as on Ctrl-C (the checkpoint named, the folder released), and each is recorded
    for raise_pending; the handlers before are restored. Only the main thread may install handlers: elsewhere (a
    notebook's worker thread) the block runs with the handlers it has."""
    handled = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
    try:
        before = {s: signal.signal(getattr(signal, s), _raise_signalled) for s in handled}
    except ValueError:
        before = {}
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_swallowed_interrupt
    _pending.clear()
    try:
        yield
    finally:
        _pending.clear()
        sys.unraisablehook = hook
        for s, h in before.items():
            signal.signal(getattr(signal, s), h)


def interrupted_line(e: KeyboardInterrupt) -> tuple[str, int]:
    """(the line to print, the exit code) for a command stopped by a signal: Ctrl-C, or Signalled directly or as
    the cause of a RunInterrupted (whose message names the checkpoint to continue from)."""
    sig = next((x.signum for x in (e, e.__context__) if isinstance(x, Signalled)), signal.SIGINT)
    what = "" if isinstance(e, Signalled) else str(e)
    what = what or ("interrupted: finished work is kept; run the same command (with --resume for pretrain-teacher "
                    "/ distill) to continue")
    by = "" if sig == signal.SIGINT else f" (stopped by {signal.Signals(sig).name}, exit {128 + sig})"
    return what + by, 128 + sig
