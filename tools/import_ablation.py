"""Bring the finished rows of a Table 4 run made in another git worktree into this checkout's results/.

    python tools/import_ablation.py ../ab --data-dir "$(cd ../shared/data && pwd)" [--preset cpu]

1. rebuilds the table there with this checkout's code (`ablate --preset P --table-only`: nothing is trained; the
   rows are scored from their files), 2. copies results/table4_ablation.{csv,json}, results/<P>/ablation/ and
   results/runs/eval/<P>_ablation_*/ (per-seed records, no models) here, 3. writes the data folder as
   ../shared/data (the same folder seen from the repository) instead of the run's absolute path.
Then regenerate the report: `python -m tinydistil report --results-dir results --preset P`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("worktree", help="the worktree the ablation ran in (its runs/ and results/)")
    ap.add_argument("--data-dir", required=True, help="the data folder the run was given (absolute path)")
    ap.add_argument("--preset", default="cpu")
    a = ap.parse_args(argv)
    wt, p = Path(a.worktree).resolve(), a.preset
    if not (wt / "runs" / p / "ablation").is_dir():
        print(f"error: {wt}/runs/{p}/ablation does not exist; give the worktree the ablation ran in", file=sys.stderr)
        return 2
    env = {**os.environ, "TINYDISTIL_DATA_DIR": a.data_dir, "OMP_NUM_THREADS": "1"}
    # this checkout's package first: `python -c` would put the worktree's own (older) tinydistil ahead of PYTHONPATH
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import tinydistil; "
            f"assert tinydistil.__file__.startswith({str(REPO)!r}), tinydistil.__file__; "
            "from tinydistil.cli import main; "
            f"raise SystemExit(main(['ablate', '--preset', {p!r}, '--table-only']))")
    rc = subprocess.run([sys.executable, "-c", code], cwd=wt, env=env).returncode
    if rc:  # the rebuild said why in one line (e.g. a row still running there holds the study's lock)
        print(f"error: rebuilding Table 4 in {wt} failed (exit {rc}, its message above); nothing was copied",
              file=sys.stderr)
        return rc
    src, dst = wt / "results", REPO / "results"
    copied = [shutil.copy2(src / f"table4_ablation.{ext}", dst / f"table4_ablation.{ext}") for ext in ("csv", "json")]
    for folder in [src / p / "ablation", *sorted((src / "runs" / "eval").glob(f"{p}_ablation_*"))]:
        target = dst / folder.relative_to(src)
        shutil.copytree(folder, target, dirs_exist_ok=True)
        copied += [q for q in target.rglob("*") if q.is_file()]
    absolute = str(Path(a.data_dir).resolve())
    for path in map(Path, copied):
        if path.suffix in (".json", ".jsonl", ".csv", ".txt", ".md"):
            text = path.read_text()
            if absolute in text:
                path.write_text(text.replace(absolute, "../shared/data"))
    print(f"copied {len(copied)} files into {dst}; now: python -m tinydistil report --results-dir results --preset {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
