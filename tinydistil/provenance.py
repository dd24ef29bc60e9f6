"""What produced a result: command, git commit, machine, library versions, wall time."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path


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


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
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
