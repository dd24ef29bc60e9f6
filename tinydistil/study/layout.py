"""Where a preset's study keeps everything: one object used by `reproduce`, `ablate`, the CLI and the notebooks.

    lay = Layout("cpu")                  # the preset's own folders (cpu: runs/..., tables in results/)
    lay = Layout("cpu", root="/content/drive/MyDrive/tinydistil")   # everything under root/cpu/
    lay.eval_dir("student") / "glue"     # runs/eval/cpu_student/glue

Preset folders: runs/<preset>/<stage> (the presets' output_dir), runs/eval/<preset>_<role>, tables in the preset's
tables_dir (cpu: results/, its logs and reproduce.json in results/cpu/), the report and poster in report/ and
poster/ when the tables go to results/ (else beside the tables). Under a root: root/<preset>/{<stage>, eval/<role>,
results, results/report, results/poster}.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    preset: str
    root: str | None = None

    @property
    def runs(self) -> Path:
        """Training runs (the ablation's variants under runs/ablation/<slug>)."""
        return Path(self.root) / self.preset if self.root else Path("runs") / self.preset

    def eval_dir(self, role: str) -> Path:
        """Fine-tuning results of one model: role 'teacher', 'student' or 'ablation_<slug>'."""
        return self.runs / "eval" / role if self.root else Path("runs") / "eval" / f"{self.preset}_{role}"

    def eval_roles(self, prefix: str) -> list[str]:
        """The roles starting with `prefix` that have an eval folder (e.g. "curve_": the tokens curve's points)."""
        lead = "" if self.root else f"{self.preset}_"  # eval_dir(role) is <base>/<lead><role>
        base = self.eval_dir("x").parent
        return sorted(p.name[len(lead):] for p in base.glob(f"{lead}{prefix}*") if p.is_dir())

    @property
    def tables_dir(self) -> Path:
        from ..presets import get_preset

        if self.root:
            return self.runs / "results"
        return Path(get_preset(self.preset).tables_dir or f"runs/{self.preset}/results")

    @property
    def records(self) -> Path:
        """Logs, run records and reproduce.json, where the report looks for them (cpu: results/cpu/)."""
        return self.tables_dir / self.preset

    @property
    def report_dir(self) -> Path:
        return Path("report") if self.tables_dir == Path("results") else self.tables_dir / "report"

    @property
    def poster_dir(self) -> Path:
        return Path("poster") if self.tables_dir == Path("results") else self.tables_dir / "poster"

    def copied_eval(self, role: str) -> Path:
        """Where the per-seed results of eval_dir(role) are copied beside the tables (the models are not)."""
        return self.tables_dir / "runs" / "eval" / f"{self.preset}_{role}"


def study_locked(fn):
    """`fn(preset, root=None, ...)` (a study command: reproduce, ablate) run while it holds the lock of its
    study folder (Layout.runs/.lock) across all its stages: a second study command on the same root is
    refused with the holder's PID instead of writing the same tables, report and poster at the same time."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args, **kw):
        from ..rundir import FolderLock

        bound = sig.bind(*args, **kw)
        bound.apply_defaults()
        folder = Layout(bound.arguments["preset"], bound.arguments["root"]).runs
        folder.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(folder).acquire()
        try:
            return fn(*args, **kw)
        finally:
            lock.release()
    return locked


def copy_results(src: Path, dest: Path) -> None:
    """Make `dest` hold the *.json / *.csv files under `src` (same layout), leaving saved models out: a results file
    in `dest` that `src` no longer has (a task an earlier study ran and this one did not) is removed, so the copy
    never mixes two studies' per-seed results. `dest` is tinydistil's copy folder (results/runs/eval/<role>)."""
    from ..rundir import copy_atomic

    src, dest = Path(src), Path(dest)
    keep = set()
    for f in sorted(src.rglob("*")):
        if f.suffix in (".json", ".csv") and "model" not in f.relative_to(src).parts:
            keep.add(f.relative_to(src))
            (dest / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(f, dest / f.relative_to(src))
    for f in sorted(dest.rglob("*"), reverse=True):  # deepest first: emptied folders go too
        if f.is_file() and f.suffix in (".json", ".csv") and f.relative_to(dest) not in keep:
            f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()


def finetune_config(overrides: dict, **defaults):
    """FinetuneConfig(**defaults) with a preset's `overrides` applied (type-checked)."""
    from ..config import replace
    from ..eval.finetune import FinetuneConfig

    return replace(FinetuneConfig(**defaults), **overrides)
