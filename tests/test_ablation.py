"""Table 4 ablation: variant scores from per-seed files, deltas and spread, and a smoke run end to end."""
import csv
import json

import pytest

from tinydistil.ablation import PAPER_DELTA, parse_variants, run_ablation, variant_scores, write_table4
from tinydistil.pipeline import reproduce


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
    assert sc["per_seed"] == pytest.approx([65.0, 65.0, 72.5])
    assert variant_scores(tmp_path, ["cola"])["score"] is None


def test_table4_deltas_spread_and_paper_column(tmp_path):
    rows = [{"Variant": "full triple loss", "score": 60.0, "per_seed": [59.0, 61.0]},
            {"Variant": "- L_ce", "score": 57.5, "per_seed": [57.0, 58.0]},
            {"Variant": "random init", "score": None, "per_seed": [], "reason": "no GLUE task with data"}]
    df = write_table4(rows, tmp_path / "t4.csv")
    with open(tmp_path / "t4.csv", newline="") as f:
        got = {r["Variant"]: r for r in csv.DictReader(f)}
    assert got["- L_ce"]["Delta"] == "-2.50" and got["full triple loss"]["Delta"] == "0.00"
    assert got["- L_ce"]["Paper delta"] == f"{PAPER_DELTA['- L_ce']:+.2f}" == "-2.96"
    assert got["full triple loss"]["Spread"] == "sd 1.41; range 59.00-61.00"
    assert got["random init"]["Score"].startswith("not run") and got["random init"]["Delta"] == ""
    assert len(df) == 3


def test_parse_variants():
    assert parse_variants("no_ce,random_init") == ["full triple loss", "- L_ce", "random init"]
    with pytest.raises(ValueError, match="unknown ablation variant 'no_kl'"):
        parse_variants("no_kl")


def test_ablation_needs_a_trained_teacher(tmp_path):
    with pytest.raises(ValueError, match="reproduce --preset smoke"):
        run_ablation("smoke", root=str(tmp_path), progress=False)


def test_smoke_ablation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = str(tmp_path)
    reproduce("smoke", root=root, skip="mlm_eval,imdb,squad,squad_d,speed,tables,report", progress=False)
    df = run_ablation("smoke", root=root, variants="no_ce,random_init", progress=False)
    assert list(df["Variant"]) == ["full triple loss", "- L_ce", "random init"]
    # the full-loss row reuses reproduce's student and its GLUE runs instead of distilling again
    assert not (tmp_path / "smoke" / "ablation" / "full").exists()
    assert df["run_id"][0] == str(tmp_path / "smoke" / "eval" / "student" / "glue")
    no_ce = json.loads((tmp_path / "smoke" / "ablation" / "no_ce" / "run.json").read_text())["config"]
    assert no_ce["alpha_ce"] == 0.0 and no_ce["alpha_cos"] > 0
    rand = json.loads((tmp_path / "smoke" / "ablation" / "random_init" / "run.json").read_text())["config"]
    assert rand["student_init"] == "random"
    sc = variant_scores(tmp_path / "smoke" / "eval" / "ablation_no_ce" / "glue", ["sst2", "stsb", "rte"])
    assert float(df["Score"][1]) == pytest.approx(sc["score"], abs=0.006)
    assert float(df["Delta"][1]) == pytest.approx(sc["score"] - float(df["Score"][0]), abs=0.011)
    assert (tmp_path / "smoke" / "results" / "table4_ablation.json").is_file()
