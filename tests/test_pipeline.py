"""`reproduce` end to end on the smoke preset: every stage on the bundled samples, tables and report written
from the runs, and a second call redoes nothing."""
import csv
import json

import pytest

from tinydistil.study.pipeline import STAGES, parse_skip, reproduce


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    root = tmp_path_factory.mktemp("repro")
    summary = reproduce("smoke", root=str(root), progress=False)
    return root, summary


def test_every_stage_runs_and_writes_its_outputs(smoke_run):
    root, summary = smoke_run
    res = root / "smoke" / "results"
    assert list(summary["stage_wall_time_s"]) == [s for s in STAGES if s != "stem"]  # smoke has no stem
    saved = json.loads((res / "smoke" / "reproduce.json").read_text())
    assert saved["total_wall_time_s"] == summary["total_wall_time_s"] and saved["git_sha"]
    # the bundled sample has a validation split: the held-out MLM stage runs (same masks for both models)
    ev = saved["mlm_eval"]
    assert ev["split"] == "valid" and ev["teacher"]["masked_tokens"] == ev["student"]["masked_tokens"] > 0
    t1 = {r["Model"].split(":")[0]: r for r in _rows(res / "table1_glue.csv")}
    # the bundled samples hold SST-2, STS-B and RTE only: the others say why they were not run
    assert t1["student"]["CoLA"] == "not run: no data" and t1["student"]["SST-2"] != "not run: no data"
    per_seed = json.loads((root / "smoke" / "eval" / "student" / "glue" / "sst2" / "seed0.json").read_text())
    assert float(t1["student"]["SST-2"]) == pytest.approx(per_seed["score"], abs=0.06)
    t2 = {r["Model"].split(":")[0]: r for r in _rows(res / "table2_downstream.csv")}
    assert {"teacher", "student", "student (D)", "student, no distillation", "DistilBERT (D)"} <= set(t2)
    # the control and (D) have Table 1 rows of their own, with retention against the teacher
    assert t1["student, no distillation"]["retention"] and t1["student (D)"]["SST-2"] != "not run: no data"
    assert "/control/model" in t1["student, no distillation"]["Model"]
    # (D) on GLUE learnt from the teacher's outputs of the same task and seed
    d_rec = json.loads((root / "smoke" / "eval" / "student_d" / "glue" / "sst2" / "seed0.json").read_text())
    assert d_rec["distilled_from"].endswith("eval/teacher/glue/sst2")
    # the tokens curve: control at 0 tokens, the snapshot at update 2 of 4, the student at the end
    curve = json.loads((res / "tokens_curve.json").read_text())
    assert [p["update"] for p in curve["points"]] == [0, 2, 4] and curve["tasks"] == ["SST-2"]
    assert all(p["mlm_accuracy"] is not None for p in curve["points"]) and saved["host_speed"]["matmul_gflops"]["fp32"] > 0
    squad = json.loads((root / "smoke" / "eval" / "student" / "squad_d" / "seed0.json").read_text())
    assert float(t2["student (D)"]["SQuAD F1"]) == pytest.approx(squad["metrics"]["f1"], abs=0.06)
    assert squad["teacher"].endswith("eval/teacher/squad/model") and "not comparable" in t2["student (D)"]["note"]
    # the note gives the questions this run used (the smoke preset caps scoring at 8), not just the split's size
    assert f"fine-tuned on {squad['train_examples']} questions, scored on 8" in t2["student (D)"]["note"]
    t3 = _rows(res / "table3_speed.csv")
    assert any(r["Model"].startswith("student (ONNX Runtime int8)") for r in t3)
    report = (res / "report" / "report.md").read_text()
    assert t1["student"]["Score"] in report and "Pretraining/distillation: not run" not in report and (res / "poster" / "poster.png").stat().st_size > 10_000


def test_second_call_redoes_nothing(smoke_run):
    root, first = smoke_run
    seed_file = root / "smoke" / "eval" / "teacher" / "squad" / "seed0.json"
    # the new stages' outputs too: the control's weights, a (D) run, a curve point's run, the curve itself
    kept = [seed_file, root / "smoke" / "control" / "model" / "model.safetensors",
            root / "smoke" / "eval" / "student_d" / "glue" / "sst2" / "seed0.json",
            root / "smoke" / "eval" / "student_d" / "imdb" / "seed0.json",
            root / "smoke" / "eval" / "curve_u2" / "glue" / "sst2" / "seed0.json",
            root / "smoke" / "eval" / "curve_u2" / "mlm_eval.json"]
    before = [f.stat().st_mtime for f in kept]
    again = reproduce("smoke", root=str(root), progress=False, skip="report")
    assert [f.stat().st_mtime for f in kept] == before
    assert again["stage_status"]["control"].startswith("done in an earlier call")
    # finished stages keep the times measured by the first call
    assert again["stage_status"]["teacher"].startswith("done in an earlier call")
    assert again["stage_wall_time_s"]["teacher"] == first["stage_wall_time_s"]["teacher"]
    assert again["stage_status"]["speed"].startswith("done in an earlier call")
    # the curve measured nothing new: it keeps its first time too, not the seconds this call spent on it
    assert again["stage_status"]["curve"].startswith("done in an earlier call")
    assert again["stage_wall_time_s"]["curve"] == first["stage_wall_time_s"]["curve"]
    # the first call ran the whole main job from scratch: its time is the budget's, and a later call keeps it
    assert first["main_job_call_s"] == first["total_wall_time_s"] == again["main_job_call_s"]
    assert not again["from_scratch"]


def test_speed_is_timed_again_for_models_newer_than_its_table(smoke_run):
    import os
    import time

    from tinydistil.study.pipeline import _speed
    from tinydistil.presets import SAMPLE_DATA

    root, summary = smoke_run
    csv_path = root / "smoke" / "results" / "table3_speed.csv"
    student = summary["student"]
    assert _speed(summary["teacher"], student, root / "none", None, csv_path, {}, False) == "already finished"
    later = time.time() + 5
    os.utime(os.path.join(student, "config.json"), (later, later))  # as if trained again after the timing
    assert _speed(summary["teacher"], student, root / "none", SAMPLE_DATA, csv_path,
                  {"max_examples": 2, "repeats": 1, "include_reference_archs": False}, False) is None


def test_parse_skip():
    assert parse_skip("downstream") >= {"glue", "speed", "report"}
    assert parse_skip(["speed", "squad_d"]) == {"speed", "squad_d"}
    with pytest.raises(ValueError, match="unknown stage 'glu'"):
        parse_skip("glu")


def test_an_interrupted_study_keeps_the_stage_times_measured_before(tmp_path):
    from tinydistil.study.pipeline import all_stages
    from tinydistil.study.summary import carry_over

    summary = {"stage_wall_time_s": {"teacher": 0.4, "distill": 0.3, "glue": 50.0},
               "stage_status": {"teacher": "already finished", "distill": "already finished", "glue": "done"}}
    earlier = {"git_sha": "abc", "stage_wall_time_s": {"teacher": 900.0, "distill": 800.0, "glue": 12.0},
               "stage_status": {"teacher": "done", "distill": "done", "glue": "done"}}
    carry_over(summary, earlier, all_stages())
    assert summary["stage_wall_time_s"] == {"teacher": 900.0, "distill": 800.0, "glue": 50.0}
    assert summary["study_wall_time_s"] == 1750.0 and summary["stage_status"]["teacher"].startswith("done in an")
    # a fine-tuning stage found finished, with no earlier measurement: the sum of its per-seed wall times
    summary = {"stage_wall_time_s": {"glue": 0.1}, "stage_status": {"glue": "already finished"},
               "seed_wall_time_s": {"glue": 640.5}}
    carry_over(summary, {"stage_wall_time_s": {"glue": 0.0}, "stage_status": {"glue": "done"}}, all_stages())
    assert summary["stage_wall_time_s"]["glue"] == 640.5 and summary["stage_status"]["glue"] == "done in earlier calls"
    assert "per-seed" in summary["stage_note"]["glue"]
    # a stage skipped in this call keeps an earlier call's record, in stage order; one never finished stays out
    summary = {"stage_wall_time_s": {"teacher": 5.0, "report": 1.0}, "skipped": ["speed", "glue"],
               "stage_status": {"teacher": "done", "report": "done"}}
    carry_over(summary, {"git_sha": "abc", "stage_wall_time_s": {"speed": 231.0, "glue": 3.0},
                          "stage_status": {"speed": "done", "glue": "not run: no data"}}, all_stages())
    assert list(summary["stage_wall_time_s"]) == ["teacher", "speed", "report"]
    assert (summary["stage_status"]["speed"], summary["stage_note"]["speed"]) == ("done in an earlier call", "abc")
    assert summary["study_wall_time_s"] == 237.0
    # a call stopped before a stage (not skipped) keeps the earlier record of it too
    summary = {"stage_wall_time_s": {"teacher": 5.0}, "stage_status": {"teacher": "done"}, "skipped": []}
    carry_over(summary, {"git_sha": "abc", "stage_wall_time_s": {"curve": 679.0}, "stage_status": {"curve": "done"}},
               all_stages())
    assert summary["stage_wall_time_s"] == {"teacher": 5.0, "curve": 679.0}
    # a reproduce.json written before stage_note: the note was in the status text
    summary = {"stage_wall_time_s": {}, "stage_status": {}, "skipped": ["teacher"]}
    carry_over(summary, {"stage_wall_time_s": {"teacher": 900.0},
                          "stage_status": {"teacher": "done in an earlier call (87d02d757714)"}}, all_stages())
    assert (summary["stage_status"]["teacher"], summary["stage_note"]["teacher"]) == (
        "done in an earlier call", "87d02d757714")
    # a call that skips mlm_eval (or report) keeps the earlier call's outputs of it; one that ran it keeps its own
    summary = {"stage_wall_time_s": {"squad": 2206.0}, "stage_status": {"squad": "done"}, "skipped": ["mlm_eval"],
               "distill_tokens_per_s": 600.9}
    carry_over(summary, {"stage_wall_time_s": {"mlm_eval": 130.0}, "stage_status": {"mlm_eval": "done"},
                         "mlm_eval": {"student": {"mlm_accuracy": 0.2336}}, "distill_tokens_per_s": 617.5,
                         "report": "report/report.md"}, all_stages())
    assert summary["mlm_eval"] == {"student": {"mlm_accuracy": 0.2336}} and summary["report"] == "report/report.md"
    assert summary["distill_tokens_per_s"] == 600.9


def test_stage_budgets_name_real_stages_and_fit_the_total():
    from tinydistil.presets import PRESETS, get_preset
    from tinydistil.study.pipeline import all_stages

    for name in PRESETS:
        p = get_preset(name)
        assert set(p.stage_budget_min) | set(p.outside_budget) <= set(all_stages()), name
        if p.stage_budget_min:  # the stages left to their own command are outside the main job's budget
            main = sum(v for k, v in p.stage_budget_min.items() if k not in p.outside_budget)
            assert p.budget_min is not None and main <= p.budget_min, name
    assert get_preset("cpu").stage_budget_min  # the main job's budget is split by stage


def test_both_models_leave_a_card_with_what_the_study_measured(smoke_run):
    from huggingface_hub import ModelCard

    root, summary = smoke_run
    assert len(summary["model_cards"]) == 2
    for role, run in (("teacher", "teacher"), ("student", "student")):
        card = ModelCard.load(root / "smoke" / run / "model" / "README.md")
        acc = summary["mlm_eval"][role]["mlm_accuracy"]
        assert card.data.eval_results[0].metric_value == round(100 * acc, 2)
        assert f"{100 * acc:.2f} %" in card.text
        t1 = {r["Model"].split(":")[0]: r for r in _rows(root / "smoke" / "results" / "table1_glue.csv")}
        paper = "91.3" if role == "student" else "92.7"  # the paper's SST-2 for DistilBERT / BERT-base
        assert f"| SST-2 (dev) | {t1[role]['SST-2']} | {paper} |" in card.text
        assert card.data.to_dict()["tinydistil"]["kind"] == role


def test_the_results_copy_mirrors_one_study(tmp_path):
    """results/runs/eval/<role> is a copy of this study's per-seed files: a task an earlier study ran and this one
    did not must not stay there, where the report would read it as this study's."""
    from tinydistil.study.layout import copy_results

    src, dest = tmp_path / "runs" / "eval" / "cpu_student", tmp_path / "results" / "runs" / "eval" / "cpu_student"
    for rel in ("glue/sst2/seed0.json", "glue/sst2/model/config.json", "glue/summary.csv"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    for rel in ("glue/cola/seed0.json", "glue/sst2/seed0.json", "imdb/seed0.json"):  # the earlier study's copy
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text("old")
    copy_results(src, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["glue/sst2/seed0.json", "glue/summary.csv"]  # models left out, stale tasks gone
    assert (dest / "glue" / "sst2" / "seed0.json").read_text() == "glue/sst2/seed0.json"
    assert not (dest / "imdb").exists() and not (dest / "glue" / "cola").exists()  # no empty folders left


def test_a_record_of_runs_not_on_this_disk_is_not_carried_over(smoke_run, tmp_path, monkeypatch):
    """A fresh clone finds the committed reproduce.json of a study made elsewhere: its host speed, stage times and
    outputs must not become this call's (they once did: a bf16 call recorded another machine's fp32 probe)."""
    import shutil

    import tinydistil.runtime
    from tinydistil.study.pipeline import describes_these_runs, open_study, runs_started

    probe = {"matmul_gflops": {"fp32": 1.0, "bf16": 2.0}, "matmul_shape": [1, 1, 1], "threads": 1}
    monkeypatch.setattr(tinydistil.runtime, "host_speed", lambda: probe)
    root, first = smoke_run
    # the same runs, resumed: the first call's probe stays the study's yardstick
    again = open_study("smoke", str(root), None, None, set(), False, False)
    assert again.earlier and again.summary["host_speed"] == first["host_speed"] != probe
    assert again.summary["host_speed_this_call"] == probe
    # a fresh folder holding only the record (as a clone holds results/): nothing of it is kept
    records = root / "smoke" / "results" / "smoke" / "reproduce.json"
    fresh = tmp_path / "clone"
    dest = fresh / records.relative_to(root)
    dest.parent.mkdir(parents=True)
    shutil.copy2(records, dest)
    st = open_study("smoke", str(fresh), None, None, set(), False, False)
    assert st.earlier == {} and st.summary["host_speed"] == probe
    # the stamps: the same start -> the same runs; another start, or nothing on disk -> not
    here = runs_started(st.cfgs | {"teacher": again.cfgs["teacher"]})
    assert here and describes_these_runs({"runs_started": dict(here)}, here)
    assert not describes_these_runs({"runs_started": {"teacher": "2026-01-01T00:00:00+00:00"}}, here)
    assert not describes_these_runs({"runs_started": dict(here)}, {})
    assert describes_these_runs({}, here)  # a record older than the stamps: trusted when its runs are here


def test_the_main_job_time_is_one_call_from_scratch_without_the_stages_outside_the_budget():
    from tinydistil.study.pipeline import _main_job_time

    base = {"outside_budget": ["curve"], "total_wall_time_s": 7000.0,
            "stage_wall_time_s": {"teacher": 1000.0, "curve": 400.0, "report": 5.0}}
    s = {**base, "from_scratch": True, "skipped": []}  # `reproduce` with the curve in one call
    _main_job_time(s)
    assert s["main_job_call_s"] == 6600.0
    s = {**base, "from_scratch": True, "skipped": ["curve"]}  # `make reproduce`: the curve left out
    _main_job_time(s)
    assert s["main_job_call_s"] == 6600.0
    for not_whole in ({"from_scratch": False, "skipped": []}, {"from_scratch": True, "skipped": ["imdb"]}):
        s = {**base, **not_whole}  # resumed runs, or a main-job stage skipped: not the main job in one call
        _main_job_time(s)
        assert "main_job_call_s" not in s


def test_a_curve_of_another_studys_student_is_not_reported(tmp_path):
    """`make reproduce` skips the curve: a tokens_curve.json left from another study (a clean clone holds the
    committed one) must not be read as this study's."""
    from tinydistil.study.curve import study_curve, write_curve

    rows = [{"point": "control (no distillation)", "update": 0, "tokens": 0, "fraction": 0.0, "mlm_accuracy": 19.0}]
    assert study_curve(tmp_path, {})[0] is None and "make curve" in study_curve(tmp_path, {})[1]
    write_curve(rows, ["SST-2"], tmp_path, student_run_started="2026-12-04T12:37:00+00:00")
    same = {"runs_started": {"distill": "2026-12-04T12:37:00+00:00"}}
    assert study_curve(tmp_path, same)[0]["points"][0]["mlm_accuracy"] == 19.0
    curve, why = study_curve(tmp_path, {"runs_started": {"distill": "2026-12-05T09:00:00+00:00"}})
    assert curve is None and "another study's student" in why
    write_curve(rows, ["SST-2"], tmp_path)  # no stamp (written before it existed): taken as the study's
    assert study_curve(tmp_path, same)[0] is not None
