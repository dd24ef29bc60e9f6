"""Table 4 ablation: variant scores from per-seed files, deltas and spread, and a smoke run end to end."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from tinydistil.paper import PAPER_TABLE4
from tinydistil.study.ablation import (held_out_mlm, paired_deltas, parse_variants, run_ablation,
                                 scores_without, variant_scores, write_table4)
from tinydistil.study.pipeline import reproduce


def _seed_files(folder, scores: dict):
    for task, per_seed in scores.items():
        (folder / task).mkdir(parents=True, exist_ok=True)
        for seed, score in per_seed.items():
            (folder / task / f"seed{seed}.json").write_text(json.dumps({"seed": seed, "score": score}))


def test_variant_scores_macro_of_medians_and_per_seed_macros(tmp_path):
    _seed_files(tmp_path, {"rte": {0: 50.0, 1: 60.0, 2: 55.0}, "sst2": {0: 80.0, 1: 70.0, 2: 90.0}})
    sc = variant_scores(tmp_path, ["cola", "rte", "sst2"])
    assert sc["tasks"] == ["rte", "sst2"]
    assert sc["score"] == pytest.approx((55.0 + 80.0) / 2)  # medians 55 and 80
    assert sc["per_seed"] == pytest.approx([65.0, 65.0, 72.5]) and sc["seeds"] == [0, 1, 2]
    assert variant_scores(tmp_path, ["cola"])["score"] is None


def test_per_task_deltas_and_the_macro_without_wnli(tmp_path):
    full_dir, rand_dir = tmp_path / "full", tmp_path / "rand"
    # WNLI alone lifts the random-init macro; without it random init is lower on both seeds
    _seed_files(full_dir, {"rte": {0: 50.0, 1: 54.0}, "sst2": {0: 80.0, 1: 84.0}, "wnli": {0: 30.0, 1: 40.0}})
    _seed_files(rand_dir, {"rte": {0: 49.0, 1: 52.0}, "sst2": {0: 70.0, 1: 80.0}, "wnli": {0: 56.0, 1: 56.0}})
    tasks = ["rte", "sst2", "wnli"]
    rows = []
    for name, d in (("full triple loss", full_dir), ("random init", rand_dir)):
        sc = variant_scores(d, tasks)
        rows.append({"Variant": name, **sc, "excl": scores_without(sc, d)})
    full, rand = rows
    assert full["medians"] == {"rte": 52.0, "sst2": 82.0, "wnli": 35.0}
    assert full["excl"]["tasks"] == ["rte", "sst2"] and full["excl"]["score"] == pytest.approx(67.0)
    assert full["excl"]["per_seed"] == pytest.approx([65.0, 69.0])
    assert rand["excl"]["per_seed"] == pytest.approx([59.5, 66.0])
    write_table4(rows, tmp_path / "t4.csv")
    with open(tmp_path / "t4.csv", newline="") as f:
        got = {r["Variant"]: r for r in csv.DictReader(f)}
    assert got["random init"]["Delta"] == f"{(50.5 + 75 + 56) / 3 - (52 + 82 + 35) / 3:+.2f}" == "+4.17"
    assert got["random init"]["Per-task delta"] == "RTE -1.50, SST-2 -7.00, WNLI +21.00"
    assert got["random init"]["Excl. WNLI"] == "62.75 (-4.25); -5.50 -3.00 (2/2 lower)"
    assert got["full triple loss"]["Excl. WNLI"] == "67.00; sd 2.83" and got["full triple loss"]["Per-task delta"] == ""
    # nothing to leave out: no secondary macro (and an empty cell, not a copy of Score)
    sc = variant_scores(full_dir, ["rte", "sst2"])
    assert scores_without(sc, full_dir) == {}
    write_table4([{"Variant": "full triple loss", **sc, "excl": {}}], tmp_path / "t4b.csv")
    with open(tmp_path / "t4b.csv", newline="") as f:
        assert next(csv.DictReader(f))["Excl. WNLI"] == ""


def test_table4_deltas_spread_and_paper_column(tmp_path):
    rows = [{"Variant": "full triple loss", "score": 60.0, "per_seed": [59.0, 61.0]},
            {"Variant": "- L_ce", "score": 57.5, "per_seed": [57.0, 58.0]},
            {"Variant": "random init", "score": None, "per_seed": [], "reason": "no GLUE task with data"},
            {"Variant": "first layers", "score": 55.0, "per_seed": [54.0, 56.0]}]
    df = write_table4(rows, tmp_path / "t4.csv")
    with open(tmp_path / "t4.csv", newline="") as f:
        got = {r["Variant"]: r for r in csv.DictReader(f)}
    assert got["- L_ce"]["Delta"] == "-2.50" and got["full triple loss"]["Delta"] == "0.00"
    assert got["- L_ce"]["Paper delta"] == f"{PAPER_TABLE4['- L_ce']:+.2f}" == "-2.96"
    assert got["full triple loss"]["Spread"] == "sd 1.41; range 59.00-61.00"
    assert got["random init"]["Score"].startswith("not run") and got["random init"]["Delta"] == ""
    assert got["full triple loss"]["Paper delta"] == "0.00"
    assert got["first layers"]["Paper delta"] == ""  # not in the paper: no number, not a zero
    assert len(df) == 4


def test_paired_deltas_and_mlm_column(tmp_path):
    full = {"Variant": "full triple loss", "score": 60.0, "per_seed": [59.0, 61.0, 63.0], "seeds": [0, 1, 2],
            "mlm_accuracy": 0.15}
    # seed 2 missing for the variant: it is paired on seeds 0 and 1 only
    no_ce = {"Variant": "- L_ce", "score": 57.5, "per_seed": [57.0, 62.0], "seeds": [0, 1], "mlm_accuracy": 0.1375}
    assert paired_deltas(no_ce, full) == pytest.approx([-2.0, 1.0])
    write_table4([full, no_ce], tmp_path / "t4.csv")
    with open(tmp_path / "t4.csv", newline="") as f:
        got = {r["Variant"]: r for r in csv.DictReader(f)}
    assert got["- L_ce"]["Paired deltas"] == "-2.00 +1.00 (1/2 lower)"
    assert got["- L_ce"]["Held-out MLM acc"] == "13.75 (-1.25)"
    assert got["full triple loss"]["Held-out MLM acc"] == "15.00" and got["full triple loss"]["Paired deltas"] == ""


def test_held_out_mlm_scores_the_student_once_and_caches(tmp_path):
    import shutil

    from tinydistil.eval.mlm_eval import evaluate_mlm
    from tinydistil.presets import SAMPLE_DATA

    data = tmp_path / "data" / "wikitext-2"
    data.mkdir(parents=True)
    train = Path(SAMPLE_DATA) / "wikitext-2" / "wiki.train.tokens"
    shutil.copy(train, data / "wiki.train.tokens")
    (data / "wiki.valid.tokens").write_text("".join(train.read_text().splitlines(True)[:60]))
    root = str(tmp_path / "r")
    reproduce("smoke", root=root, skip="downstream", progress=False)
    model = tmp_path / "r" / "smoke" / "student" / "model"
    only_train = tmp_path / "only_train" / "wikitext-2"
    only_train.mkdir(parents=True)
    shutil.copy(train, only_train / "wiki.train.tokens")
    assert "not run" in held_out_mlm(model, str(only_train.parent), 32)  # a corpus without a validation split
    assert not (model.parent / "mlm_eval_valid.json").exists()
    want = evaluate_mlm({"student": str(model)}, str(tmp_path / "data"), "valid", 32)["student"]
    got = held_out_mlm(model, str(tmp_path / "data"), 32)
    assert got == want and 0.0 <= got["mlm_accuracy"] <= 1.0 and got["masked_tokens"] > 0
    cache = model.parent / "mlm_eval_valid.json"
    cache.write_text(json.dumps({**got, "mlm_accuracy": 0.5}))  # a second call reads the cache, not the model
    assert held_out_mlm(model, str(tmp_path / "data"), 32)["mlm_accuracy"] == 0.5


def test_parse_variants():
    assert parse_variants("no_ce,random_init") == ["full triple loss", "- L_ce", "random init"]
    with pytest.raises(ValueError, match="unknown ablation variant 'no_kl'"):
        parse_variants("no_kl")


def test_first_layers_variant_takes_the_teachers_bottom_half(smoke_teacher, tmp_path):
    from tinydistil.study.ablation import variant_config
    from tinydistil.presets import stage_config

    base = stage_config("smoke", "distill", teacher=str(smoke_teacher), output_dir=str(tmp_path / "s"))
    cfg = variant_config(base, "first layers", str(tmp_path / "first"))
    assert cfg.student_layers == [0] and base.student_layers is None  # the smoke teacher has 2 layers
    assert parse_variants("first_layers") == ["full triple loss", "first layers"]


def test_ablation_needs_a_trained_teacher(tmp_path):
    with pytest.raises(ValueError, match="reproduce --preset smoke"):
        run_ablation("smoke", root=str(tmp_path), progress=False)


def test_smoke_ablation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = str(tmp_path)
    reproduce("smoke", root=root, skip="mlm_eval,imdb,squad,squad_d,speed,tables,report", progress=False)
    import tinydistil.runtime

    probes = []  # each call that works on a row records the machine's matmul rate beside it

    def fake_probe():
        probes.append(1)
        return {"matmul_gflops": {"fp32": 12.5 * len(probes), "bf16": "not measured: no native bf16"}}
    monkeypatch.setattr(tinydistil.runtime, "host_speed", fake_probe)
    df = run_ablation("smoke", root=root, variants="no_ce,random_init", progress=False)
    assert list(df["Variant"]) == ["full triple loss", "- L_ce", "random init"]
    # the full-loss row reuses reproduce's student and its GLUE runs instead of distilling again
    assert not (tmp_path / "smoke" / "ablation" / "full").exists()
    assert df["run_id"][0] == str(tmp_path / "smoke" / "eval" / "student" / "glue")
    no_ce = json.loads((tmp_path / "smoke" / "ablation" / "no_ce" / "run.json").read_text())["config"]
    assert no_ce["alpha_kl"] == 0.0 and no_ce["alpha_cos"] > 0
    rand = json.loads((tmp_path / "smoke" / "ablation" / "random_init" / "run.json").read_text())["config"]
    assert rand["student_init"] == "random"
    sc = variant_scores(tmp_path / "smoke" / "eval" / "ablation_no_ce" / "glue", ["sst2", "stsb", "rte"])
    assert float(df["Score"][1]) == pytest.approx(sc["score"], abs=0.006)
    assert float(df["Delta"][1]) == pytest.approx(sc["score"] - float(df["Score"][0]), abs=0.011)
    assert (tmp_path / "smoke" / "results" / "table4_ablation.json").is_file()
    res = tmp_path / "smoke" / "results"
    assert (res / "smoke" / "ablation" / "no_ce" / "run.json").is_file()
    copied = sorted(p.relative_to(res) for p in (res / "runs" / "eval" / "smoke_ablation_no_ce").rglob("seed*.json"))
    assert len(copied) == 3 and not list((res / "runs" / "eval").rglob("model"))  # per-seed JSONs, no models
    speed = json.loads((res / "smoke" / "ablation" / "no_ce" / "host_speed.json").read_text())
    assert [c["matmul_gflops"]["fp32"] for c in speed] == [12.5] and speed[0]["git_sha"] and speed[0]["machine"]
    assert df["note"][1].endswith("; machine matmul fp32 12.5 GFLOP/s") and "12.5" not in df["note"][0]
    assert df["note"][2].endswith("; machine matmul fp32 25.0 GFLOP/s")  # random init: the second probe, its own
    # a later call for another variant keeps the finished ones in the table (without training them again)
    mtime = (tmp_path / "smoke" / "ablation" / "no_ce" / "summary.json").stat().st_mtime
    df2 = run_ablation("smoke", root=root, variants="no_cos", progress=False)
    assert list(df2["Variant"]) == ["full triple loss", "- L_ce", "- L_cos", "random init"]
    assert list(df2["Score"][[0, 1, 3]]) == list(df["Score"]) and list(df2["Delta"][[0, 1, 3]]) == list(df["Delta"])
    assert (tmp_path / "smoke" / "ablation" / "no_ce" / "summary.json").stat().st_mtime == mtime
    assert df2["note"][1] == df["note"][1]  # its wall time is the one its runs recorded, not this call's
    assert len(json.loads((res / "smoke" / "ablation" / "no_ce" / "host_speed.json").read_text())) == 1
    # a later call interrupted while distilling leaves every finished row in the table
    from tinydistil.train import Trainer

    real_train = Trainer.train

    def train_or_stop(self):
        if "no_mlm" in str(self.cfg.output_dir):
            raise KeyboardInterrupt
        return real_train(self)

    monkeypatch.setattr(Trainer, "train", train_or_stop)
    with pytest.raises(KeyboardInterrupt):
        run_ablation("smoke", root=root, variants="no_mlm", progress=False)
    with open(res / "table4_ablation.csv", newline="") as f:
        left = list(csv.DictReader(f))
    assert [r["Variant"] for r in left] == ["full triple loss", "- L_ce", "- L_cos", "random init"]
    assert [r["Score"] for r in left] == list(df2["Score"])
    # --table-only rebuilds the same table from the finished variants and trains nothing
    monkeypatch.setattr(Trainer, "train", lambda self: pytest.fail("table_only must not train"))
    run_ablation("smoke", root=root, table_only=True, progress=False)
    with open(res / "table4_ablation.csv", newline="") as f:
        assert list(csv.DictReader(f)) == left  # the same table as the last call's, cell for cell
    assert not (tmp_path / "smoke" / "ablation" / "no_mlm" / "summary.json").exists()
    # a finished row whose model is gone (restored from results/ on another machine) is not trained again
    shutil.rmtree(tmp_path / "smoke" / "ablation" / "no_ce" / "model")
    df3 = run_ablation("smoke", root=root, variants="no_ce", progress=False)
    assert list(df3["Score"]) == [r["Score"] for r in left if r["Variant"] in df3["Variant"].tolist()]


def test_ablation_protocol_of_its_own_leaves_table1_alone(tmp_path, monkeypatch):
    """A preset whose `ablation_glue` differs from `glue`: every Table 4 row, the full loss's too, is fine-tuned
    under it (the full row in its own folder, reusing reproduce's student); Table 1's GLUE runs stay untouched."""
    import dataclasses

    from tinydistil import presets
    from tinydistil.study.report import _table4_protocol
    from tinydistil.study.results import load_results, main_records

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = str(tmp_path)
    reproduce("smoke", root=root, skip="mlm_eval,imdb,squad,squad_d,speed,report", progress=False)
    main_eval = tmp_path / "smoke" / "eval" / "student" / "glue"
    before = {p: p.read_bytes() for p in main_eval.rglob("*.json")}
    real = presets.get_preset

    def with_protocol(name):
        p = real(name)
        return dataclasses.replace(p, downstream={**p.downstream, "ablation_glue": {
            **p.downstream["glue"], "seeds": 2, "max_train_examples": 12}})

    monkeypatch.setattr(presets, "get_preset", with_protocol)
    df = run_ablation("smoke", root=root, variants="no_ce", progress=False)
    full_dir = tmp_path / "smoke" / "eval" / "ablation_full" / "glue"
    assert df["run_id"][0] == str(full_dir)
    assert not (tmp_path / "smoke" / "ablation" / "full").exists()  # reproduce's student, not distilled again
    for d in (full_dir, tmp_path / "smoke" / "eval" / "ablation_no_ce" / "glue"):
        recs = [json.loads(p.read_text()) for p in d.rglob("seed*.json")]
        assert sorted({r["seed"] for r in recs}) == [0, 1] and {r["train_examples"] for r in recs} == {12}
        assert {r["model"] for r in recs} != {""}
    assert json.loads(next(full_dir.rglob("seed0.json")).read_text())["model"].endswith("smoke/student/model")
    assert {p: p.read_bytes() for p in main_eval.rglob("*.json")} == before  # Table 1's runs untouched
    assert list(df["Seeds"]) == [2, 2]
    assert "2 seeds x <= 12 examples" in df["note"][0]
    # wall = what the runs recorded: the distillation's summary.json plus every (task, seed) file's wall time
    no_ce_dir = tmp_path / "smoke" / "eval" / "ablation_no_ce" / "glue"
    glue_s = sum(json.loads(p.read_text())["wall_time_s"] for p in no_ce_dir.rglob("seed*.json"))
    distil_s = json.loads((tmp_path / "smoke" / "ablation" / "no_ce" / "summary.json").read_text())["train_wall_time_s"]
    assert f"wall {distil_s + glue_s:.0f} s as recorded (distillation {distil_s:.0f} s + GLUE {glue_s:.0f} s)" \
        in df["note"][1]
    res_dir = tmp_path / "smoke" / "results"
    assert len(list((res_dir / "runs" / "eval" / "smoke_ablation_full" / "glue").rglob("seed*.json"))) == 6
    # the report: Table 4's protocol read from its runs; Tables 1-2's seeds and subsets from theirs only
    res = load_results(res_dir, "smoke")
    assert _table4_protocol(res)[0].startswith("Every row fine-tuned the same way: 2 seeds (0, 1), at most 12 ")
    assert {r["seed"] for r in main_records(res)} == {0} and max(r["train_examples"] for r in main_records(res)) == 16


def test_cpu_preset_runs_the_declared_table4_protocol():
    """results/table4_protocol_v2.md (the protocol the preset runs now; the first, table4_protocol.md, made the
    committed 60-update table) was committed before the runs; the preset must still say what it declares."""
    import re
    from pathlib import Path

    from tinydistil.study.ablation import protocol
    from tinydistil.eval.glue import parse_tasks

    text = (Path(__file__).resolve().parents[1] / "results" / "table4_protocol_v2.md").read_text()
    declared = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    glue_cfg, tasks, distill = protocol("cpu")
    for k, v in declared["ablation_glue"].items():
        assert getattr(glue_cfg, k) == v, k
    assert tasks == parse_tasks(declared["ablation_tasks"]) == ["sst2", "stsb"]
    assert distill == declared["ablation_distill"]
    assert protocol("cpu", {"max_steps": 7, "lr": 1e-3})[2] == {"max_steps": 7, "lr": 1e-3}  # flags win
    assert protocol("smoke")[2] == {}  # no ablation settings: the preset's own distillation
    from tinydistil.presets import get_preset

    rule = get_preset("cpu").downstream["ablation_rule"]
    assert rule["paired_t_alpha"] == declared["rule"]["paired_t_alpha"] == 0.05
    # every row distilled exactly as the main study's student: no overrides of its DistillConfig
    assert declared["ablation_distill"] == {}


def test_a_committed_variant_from_before_the_rename_is_still_found_finished():
    """The first Table 4's no_ce/run.json (results/experiments/table4_v1_60_updates/) predates the rename
    (alpha_ce: 0.0): `ablate` still reads it as the finished "- L_ce" row (alpha_kl = 0), and not as the full loss."""
    from tinydistil.presets import stage_config
    from tinydistil.study.ablation import VARIANTS, _same_run

    folder = (Path(__file__).resolve().parents[1] / "results" / "experiments" / "table4_v1_60_updates" / "cpu" /
              "ablation" / "no_ce")
    assert json.loads((folder / "run.json").read_text())["config"]["alpha_ce"] == 0.0  # the committed file as it is
    # the settings the committed Table 4 rows ran under: the cpu preset's distillation before issue 25 changed it
    ran = json.loads((folder / "run.json").read_text())["config"]
    before = {k: ran[k] for k in ("epochs", "lr", "warmup_frac")}
    assert _same_run(folder, stage_config("cpu", "distill", **VARIANTS["- L_ce"], max_steps=60, **before))
    assert not _same_run(folder, stage_config("cpu", "distill", max_steps=60, **before))


def test_import_ablation_says_in_one_line_why_it_copied_nothing(tmp_path):
    """tools/import_ablation.py on a worktree whose Table 4 is still being run there (the study's lock is held):
    the holder named in one line, no traceback, nothing copied here."""
    import subprocess
    import sys
    from pathlib import Path

    from tinydistil.rundir import FolderLock

    root = Path(__file__).resolve().parents[1]
    tool = [sys.executable, str(root / "tools" / "import_ablation.py")]
    missing = subprocess.run([*tool, str(tmp_path), "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 2 and "runs/cpu/ablation does not exist" in missing.stderr
    (tmp_path / "runs" / "cpu" / "ablation").mkdir(parents=True)
    lock = FolderLock(tmp_path / "runs" / "cpu").acquire()  # as a running `ablate` holds it
    try:
        busy = subprocess.run([*tool, str(tmp_path), "--data-dir", str(tmp_path)], capture_output=True, text=True)
    finally:
        lock.release()
    assert busy.returncode != 0 and "Traceback" not in busy.stderr
    assert "another process" in busy.stderr and "nothing was copied" in busy.stderr
