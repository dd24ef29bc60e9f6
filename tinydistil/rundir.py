"""Run folders: files written atomically, a torn log line read as absent, one process per folder at a time."""
from __future__ import annotations

import json
import os
from pathlib import Path

LOCK_NAME = ".lock"


def write_json_atomic(path: str | os.PathLike, obj, **dump_kw) -> Path:
    """Write `obj` as JSON to a temporary file beside `path`, then rename it over `path`: a crash leaves the
    old file or the new one, never a torn one."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, **{"indent": 2, **dump_kw}))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file; a torn line (a kill mid-write) is dropped, not an error."""
    out = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class FolderLock:
    """An exclusive advisory lock on <folder>/.lock held while a run works in the folder (released when the
    process ends, however it ends). A second process gets a ValueError naming the holder's PID."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_NAME
        self._fd = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"another process (PID {holder}) is working in {self.path.parent}; wait for it to "
                             "finish or stop it, or choose another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
