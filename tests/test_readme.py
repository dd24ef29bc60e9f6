"""Every command in the README's code blocks works as written: tinydistil commands parse and validate (the
work itself replaced by stubs that record what they were asked), make targets and scripts exist, benchmark
flags exist in their scripts."""
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """Command lines inside the README's fenced code blocks (comments dropped, continuation lines joined)."""
    out, inside, buf = [], False, ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = buf + line.split("  #")[0].rstrip()
        if line.endswith("\\"):
            buf = line[:-1] + " "
            continue
        buf = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def tinydistil_argv(cmd: str) -> list[str] | None:
    """The arguments after `-m tinydistil` in a shell line (None when the line does not run tinydistil)."""
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", cmd).replace("$SLURM_JOB_ID", "1"))  # [optional] parts dropped
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "tinydistil":
            return words[i + 2:]
    return None


COMMANDS = [c for c in readme_commands() if tinydistil_argv(c) is not None]


def test_the_readme_has_its_commands():
    assert any(tinydistil_argv(c)[:1] == ["reproduce"] for c in COMMANDS)
    assert "make reproduce" in readme_commands() and "make test" in readme_commands()


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """Replace each command's work with a recorder; configs are still built and validated."""
    import tinydistil.cli as cli
    import tinydistil.deploy.export as export
    import tinydistil.deploy.speed as speed
    import tinydistil.eval.glue as glue
    import tinydistil.eval.imdb as imdb
    import tinydistil.eval.squad as squad
    import tinydistil.study.ablation as ablation
    import tinydistil.study.pipeline as pipeline
    import tinydistil.study.poster as poster
    import tinydistil.study.report as report
    import tinydistil.study.tables as tables

    calls = []
    frame = pd.DataFrame([{"task": "x", "display": "X", "score": 1.0, "note": "", "run_id": ""}])

    def rec(name, value=None):
        def f(*a, **k):
            from tinydistil.eval.finetune import FinetuneConfig

            for x in a:
                if isinstance(x, FinetuneConfig):
                    x.validate()
            calls.append(name)
            return value if value is not None else frame
        return f

    monkeypatch.setattr(cli, "_run", lambda cfg, stage, resume: (cfg.validate(), calls.append(stage)))
    monkeypatch.setattr(pipeline, "reproduce", rec("reproduce", {"ok": True}))
    monkeypatch.setattr(ablation, "run_ablation", rec("ablate"))
    for mod, name in ((glue, "run_glue"), (imdb, "run_imdb"), (squad, "run_squad"), (speed, "run_speed")):
        monkeypatch.setattr(mod, name, rec(name))
    monkeypatch.setattr(tables, "write_tables", rec("tables", (frame, frame)))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    monkeypatch.setattr(export, "export_onnx", rec("export", onnx))
    monkeypatch.setattr(export, "check_export", lambda *a, **k: 0.0)
    import tinydistil.deploy.hub as hub

    monkeypatch.setattr(hub, "push_to_hub", rec("push_to_hub", "https://huggingface.co/commit"))
    monkeypatch.setattr(report, "write_report", rec("report", tmp_path / "r.md"))
    monkeypatch.setattr(poster, "write_poster", rec("poster", (tmp_path / "p.pdf", tmp_path / "p.png")))
    monkeypatch.chdir(tmp_path)
    for d in ("runs/eval/cpu_teacher", "runs/eval/cpu_student"):  # what `tables` reads must exist
        (tmp_path / d).mkdir(parents=True)
    return calls


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_readme_tinydistil_command_parses_and_validates(cmd, stubbed, capsys):
    from tinydistil.cli import main

    rc = main(tinydistil_argv(cmd))
    assert rc == 0, f"{cmd}: {capsys.readouterr().err}"
    assert stubbed or tinydistil_argv(cmd)[0] == "show-config"  # the command reached its work


def test_make_targets_scripts_and_benchmark_flags_exist():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    for cmd in readme_commands():
        words = shlex.split(cmd)
        if words[0] == "make":
            assert words[1] in targets, cmd
        for i, w in enumerate(words):
            if w in ("sh", "bash") and i + 1 < len(words):
                assert (ROOT / words[i + 1]).is_file(), cmd
            if w.startswith("benchmarks/") and w.endswith(".py"):
                src = (ROOT / w).read_text()
                for flag in (x for x in words[i + 1:] if x.startswith("--")):
                    assert f'"{flag}"' in src, f"{cmd}: {flag} is not an option of {w}"


def test_make_reproduce_leaves_out_exactly_the_stages_outside_the_budget():
    """The 120-min budget is the main job's: `make reproduce` skips the cpu preset's outside_budget stages and a
    target of each stage's name runs it afterwards (reproduce again, keeping what is finished)."""
    from tinydistil.presets import get_preset

    make = (ROOT / "Makefile").read_text()
    outside = get_preset("cpu").outside_budget
    assert outside and re.search(r"^reproduce: setup\n\t.*reproduce --preset cpu --skip " + ",".join(outside) + "$",
                                 make, re.M)
    for stage in outside:
        assert re.search(rf"^{stage}: setup\n\t.*reproduce --preset cpu$", make, re.M), stage
