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


def refuse_foreign(path: str | os.PathLike, ours, overwrite: bool = False) -> None:
    """ValueError when `path` exists and `ours(path)` says tinydistil did not write it (unless overwrite), or
    when it is a folder where a file goes: no command replaces a user's file without --overwrite."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file path")
    if path.exists() and not overwrite and not ours(path):
        raise ValueError(f"{path} exists and was not written by tinydistil; pass --overwrite to replace it or "
                         "choose another path")


def json_with(path: Path, *keys: str) -> bool:
    """True when `path` is a JSON object holding every key in `keys` (how our provenance files look)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and all(k in d for k in keys)


def made_by_matplotlib(path: Path) -> bool:
    """PNG / PDF files written by matplotlib (our figures and poster) name it in their metadata: a PNG's
    first bytes (Software), a PDF's Info dictionary near its end (Producer), before the cross-reference table."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            f.seek(max(0, f.seek(0, os.SEEK_END) - (1 << 16)))
            tail = f.read()
    except OSError:
        return False
    return any(b"atplotlib" in x for x in (head, tail))
