"""Run folders: files written atomically, a torn log line read as absent, one process per folder at a time,
and what produced a result (command, git commit, machine, library versions).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
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


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temporary path beside `path` to write the file to; when the block ends without error it is
    renamed over `path` (else removed): a kill mid-write leaves the old file or the new one, never a torn one.
    Writers that pick a format from the name (savefig) are given it explicitly."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """shutil.copyfile through atomic_file."""
    import shutil

    with atomic_file(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


# how torch.save / safetensors report a failed write (a full disk among them): RuntimeError, not OSError
WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed", "unexpected pos", "No space left")


def write_failure(e: Exception, path: str | os.PathLike, needed_bytes: int) -> OSError | None:
    """The OSError to report for `e`, raised while writing `path` (about `needed_bytes` long) after the partial
    file was removed: ENOSPC naming the space needed and free when the disk cannot hold it, else `e`'s own
    error; None when `e` is not a failed write (a bug to show as it is)."""
    import errno
    import shutil

    if not isinstance(e, OSError) and not any(s in str(e) for s in WRITE_FAILURES):
        return None
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        free = None
    full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < needed_bytes)
    code = getattr(e, "errno", None) if isinstance(e, OSError) and e.errno else errno.ENOSPC if full else errno.EIO
    space = f" (it needs about {needed_bytes / 1e6:.1f} MB" + (f", {free / 1e6:.1f} MB are free)" if free is not None
                                                                 else ")")
    reason = (os.strerror(code) if full or not isinstance(e, OSError) else e.strerror or str(e))
    return OSError(code, f"{reason} while writing{space}", str(path))


def save_atomic(write, path: str | os.PathLike, needed_bytes: int) -> Path:
    """`write(tmp)` (e.g. torch.save to it), then rename tmp over `path` (a crash mid-write leaves the previous
    file intact). A failed write (a full disk: torch.save says so with a RuntimeError) removes tmp and raises
    write_failure's OSError naming `path` and the space needed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        err = write_failure(e, path, needed_bytes)
        if err is None:
            raise
        raise err from None
    return path


def tensor_bytes(obj) -> int:
    """The bytes of the tensors in a nested dict / list (a checkpoint): about the size of its file."""
    if hasattr(obj, "numel") and hasattr(obj, "element_size"):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    return sum(tensor_bytes(v) for v in obj) if isinstance(obj, (list, tuple)) else 0


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


def resolved_paths(d: dict, fields) -> dict:
    """`d` with each of `fields` that names an existing local path made absolute (a relative and an absolute
    spelling of one folder compare equal)."""
    out = dict(d)
    for k in fields:
        v = out.get(k)
        if isinstance(v, str) and v and Path(v).expanduser().exists():
            out[k] = str(Path(v).expanduser().resolve())
    return out


def config_diff(mine: dict, saved: dict, ignore=(), path_fields=(), defaults: dict | None = None) -> list[str]:
    """Sorted keys whose values differ between two configs (as JSON dicts), paths resolved; a key missing from
    `saved` counts as its value in `defaults` (fields added since the saved run began)."""
    mine, saved, defaults = resolved_paths(mine, path_fields), resolved_paths(saved, path_fields), defaults or {}
    return sorted(k for k in set(saved) | set(mine) if k not in ignore and saved.get(k, defaults.get(k)) != mine.get(k))


def claim_run_folder(out: Path, resume: bool, record: dict, diff) -> FolderLock:
    """Lock `out` for a training run and return the lock. A new run: `out` must be absent or empty, and gets
    run.json = `record`. A run already there: continued only with `resume` and when `diff(saved config)` is
    empty; otherwise ValueError naming the fix. Nothing is written unless the run may go ahead."""
    run_file = out / "run.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} is a file; choose a folder")
    if run_file.is_file():
        if not resume:
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --output-dir")
        lock = FolderLock(out).acquire()
        try:
            saved = json.loads(run_file.read_text())["config"]
        except (ValueError, KeyError):
            lock.release()
            raise ValueError(f"{run_file} is unreadable; choose another --output-dir") from None
        if d := diff(saved):
            lock.release()
            raise ValueError(f"--resume: {out} holds a run with other settings ({', '.join(d)}); "
                             "use the same settings or another --output-dir")
        return lock
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no tinydistil run; choose another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out).acquire()
    write_json_atomic(run_file, record)
    return lock


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run can continue from."""


def record_call(out: Path, step: int, rename=None) -> None:
    """A resumed run records which call trains from where: from update 0 (nothing of an earlier call survives)
    run.json becomes this call's; later, the call is appended to run.json's "resumed" list. Log lines written
    after the point resumed from are dropped: they are written again. rename(dict) -> dict (config.current_names)
    gives a folder written before a rename the current names in run.json and log.jsonl, so it reads as one run."""
    run_file, info = out / "run.json", run_info()
    rec = json.loads(run_file.read_text())
    if rename:
        rec["config"] = rename(rec["config"])
    if step == 0:
        rec = {"config": rec["config"], **info, **({"teacher_source": rec["teacher_source"]}
                                                   if "teacher_source" in rec else {})}
    else:
        rec.setdefault("resumed", []).append({**info, "from_step": step})
    write_json_atomic(run_file, rec)
    truncate_log(out / "log.jsonl", step, rename)


def truncate_log(log: Path, step: int, rewrite=None) -> None:
    """Keep the records of log.jsonl up to update `step` (a resumed run writes the later ones again); a torn
    last line goes too. `rewrite(record)`, if given, is applied to each record kept."""
    if log.is_file():
        keep = [rewrite(r) if rewrite else r for r in read_jsonl(log) if r.get("step", 0) <= step]
        tmp = log.with_name(log.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, log)


def refuse_foreign(path: str | os.PathLike, ours, overwrite: bool = False) -> None:
    """ValueError when `path` exists and `ours(path)` says tinydistil did not write it (unless overwrite), or
    when it is a folder where a file goes: no command replaces a user's file without --overwrite."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file path")
    if path.exists() and not overwrite and not ours(path) and not torn(path):
        raise ValueError(f"{path} exists and was not written by tinydistil; pass --overwrite to replace it or "
                         "choose another path")


def torn(path: str | os.PathLike) -> bool:
    """True for a file a kill left half-written (before outputs were written atomically, or by another tool):
    empty, a JSON file that does not parse, a PDF cut before its end marker (a cut PNG of ours still names
    matplotlib in its first bytes). Such a file holds nothing to keep, so a stage that writes that name redoes
    it instead of refusing it."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return True
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, f.seek(0, os.SEEK_END) - 1024))
            tail = f.read()
    except OSError:
        return False
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            return True
    return head.startswith(b"%PDF") and b"%%EOF" not in tail


def json_with(path: Path, *keys: str) -> bool:
    """True when `path` is a JSON object holding every key in `keys` (how our provenance files look)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and all(k in d for k in keys)


def csv_with(path: Path, *columns: str) -> bool:
    """True when the header line of the CSV file `path` names every one of `columns` (how our tables look)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\r\n").split(",")
    except OSError:
        return False
    return all(c in header for c in columns)


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


# ------------------------------------------------------------------ provenance

def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        sha = out.stdout.strip()
        if out.returncode or not sha:
            return "unknown"
        # outputs (results/, report/, poster/) being rewritten by the run itself do not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(exclude,top)results", ":(exclude,top)report", ":(exclude,top)poster"],
                               capture_output=True,
                               text=True, timeout=10, cwd=Path(__file__).resolve().parent).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# the processor flags that decide CPU speed here (vector width, native bf16 / int8): recorded with every timing,
# since the same model name ("AMD EPYC") covers kinds with and without them
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict:
    import torch

    from .runtime import cpu_flags, cpu_has_native_bf16

    flags = cpu_flags()
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
            "cpu_flags": " ".join(f for f in SPEED_FLAGS if f in flags),
            "native_bf16": cpu_has_native_bf16(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def run_info() -> dict:
    prog = os.path.basename(sys.argv[0])
    prog = "python -m tinydistil" if prog == "__main__.py" else prog
    return {"command": " ".join([prog, *sys.argv[1:]]), "git_sha": git_sha(),
            "machine": machine(), "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
