"""SQuAD: loading, windows and offsets, n-best decoding, the (D) loss, and a run on tiny models."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_downstream import save_tiny_model, squad_json, write_squad_fixture

from tinydistil.eval.finetune import FinetuneConfig
from tinydistil.hf import load_tokenizer
from tinydistil.eval.metrics import squad_metrics
from tinydistil.losses import qa_distillation_loss
from tinydistil.eval.squad import (SquadConfig, decode_answers, eval_features, load_squad,
                              read_squad_json, run_squad, split_articles, train_features)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("squad")
    teacher, student = save_tiny_model(root / "teacher"), save_tiny_model(root / "student", "distilbert")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (teacher / f).is_file():  # a distilled student keeps its teacher's tokenizer
            shutil.copy(teacher / f, student / f)
    return {"teacher": teacher, "student": student, "data": write_squad_fixture(root / "data"), "root": root}


def _dataset(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def test_read_squad_json_rows_and_errors(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad_json(n_articles=2, paragraphs=2)))
    rows = read_squad_json(path)
    assert len(rows) == 2 * 2 * 2 and rows[0]["title"] == "article_0"
    for r in rows:  # the fixture's answer offsets point at the answer text
        for text, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
            assert r["context"][start:start + len(text)] == text
    path.write_text('{"data": [{"title": "x", "paragraphs": [{"qas": [{"id": "1", "question": "q"}]}]}]}')
    with pytest.raises(ValueError, match="not a SQuAD v1.1 JSON"):
        read_squad_json(path)
    path.write_text('{"data": []}')
    with pytest.raises(ValueError, match="no questions"):
        read_squad_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a SQuAD"):
        read_squad_json(path)


def test_split_articles_is_fixed_and_disjoint(tmp_path):
    rows = read_squad_json(write_squad_fixture(tmp_path) / "squad-v1.1" / "dev-v1.1.json")
    a_train, a_eval = split_articles(rows, 0.5)
    b_train, b_eval = split_articles(rows, 0.5)
    assert [r["id"] for r in a_train] == [r["id"] for r in b_train]
    titles_train, titles_eval = {r["title"] for r in a_train}, {r["title"] for r in a_eval}
    assert not titles_train & titles_eval and len(titles_train) == 3 and len(a_train) + len(a_eval) == len(rows)


def test_load_squad_local_dev_only_is_labelled_not_comparable(tmp_path):
    data = load_squad(write_squad_fixture(tmp_path))
    assert not data.comparable and "dev-v1.1.json only" in data.source
    assert not set(data.train["title"]) & set(data.eval["title"])
    with pytest.raises(Exception, match="squad-v1.1/dev-v1.1.json"):
        load_squad(tmp_path / "nowhere")


@pytest.mark.parametrize("max_len,stride", [(128, 32), (24, 8)])
def test_train_windows_point_at_the_answer(tiny, max_len, stride):
    tok = load_tokenizer(str(tiny["teacher"]))
    rows = read_squad_json(tiny["data"] / "squad-v1.1" / "dev-v1.1.json")
    ds = _dataset(rows)
    feats = train_features(ds, tok, max_len, stride)
    ev = eval_features(ds, tok, max_len, stride)
    assert len(feats) == len(ev) >= len(rows)  # same windows
    if max_len == 24:
        assert len(feats) > 2 * len(rows)  # long contexts really are split
    by_id = {r["id"]: r for r in rows}
    hits = 0
    for f, e in zip(feats, ev):
        assert len(f["input_ids"]) <= max_len
        s, t = f["start_positions"], f["end_positions"]
        if s == 0:
            assert t == 0
            continue
        hits += 1
        offs = e["offset_mapping"]
        span = by_id[e["example_id"]]["context"][offs[s][0]:offs[t][1]]
        assert span == by_id[e["example_id"]]["answers"]["text"][0] == "good"
    assert hits >= len(rows)  # every question's answer lies in at least one window


def test_oracle_logits_decode_to_the_gold_answers(tiny):
    """Logits peaked at the labelled span, decoded through windows and offsets, give EM = F1 = 100."""
    tok = load_tokenizer(str(tiny["teacher"]))
    rows = read_squad_json(tiny["data"] / "squad-v1.1" / "dev-v1.1.json")
    ds = _dataset(rows)
    feats, ev = train_features(ds, tok, 24, 8), eval_features(ds, tok, 24, 8)
    width = max(len(x) for x in feats["input_ids"])
    start = np.zeros((len(feats), width), np.float32)
    end = np.zeros_like(start)
    for i, f in enumerate(feats):
        if f["start_positions"]:
            start[i, f["start_positions"]] = end[i, f["end_positions"]] = 10.0
    answers = decode_answers(rows, ev, start, end)
    assert squad_metrics(answers, {r["id"]: r["answers"]["text"] for r in rows}) == {"exact_match": 100.0, "f1": 100.0}


def test_decode_respects_context_and_max_length():
    ex = [{"id": "q", "context": "aa bb cc dd"}]
    feats = {"example_id": ["q"], "offset_mapping": [[(-1, -1), (-1, -1), (0, 2), (3, 5), (6, 8), (9, 11), (-1, -1)]]}
    start = np.array([[9.0, 8.0, 1.0, 0.0, 0.5, 0.0, 9.0]])  # question/special tokens score highest: not allowed
    end = np.array([[9.0, 0.0, 0.0, 0.0, 0.0, 5.0, 9.0]])
    assert decode_answers(ex, feats, start, end) == {"q": "aa bb cc dd"}
    assert decode_answers(ex, feats, start, end, max_answer_length=2) == {"q": "cc dd"}
    assert decode_answers(ex, feats, start, end, n_best=1) == {"q": ""}  # only special tokens among the 1-best


def test_qa_distillation_loss_matches_hand_computation():
    torch.manual_seed(0)
    b, L, T = 3, 7, 2.0
    s_start, s_end, t_start, t_end = (torch.randn(b, L) for _ in range(4))
    mask = torch.ones(b, L, dtype=torch.bool)
    mask[1, 5:] = False
    pos_s, pos_e = torch.tensor([1, 2, 0]), torch.tensor([3, 4, 0])
    loss, ce, kd = qa_distillation_loss(s_start, s_end, t_start, t_end, pos_s, pos_e, mask, T, 0.3, 0.7)

    def kl(s, t):  # per row, only over the row's real tokens
        out = []
        for i in range(b):
            m = mask[i]
            p_t = torch.softmax(t[i][m] / T, -1)
            out.append((p_t * (p_t.log() - torch.log_softmax(s[i][m] / T, -1))).sum())
        return torch.stack(out).mean() * T * T

    def ce_ref(s, pos):
        return torch.stack([F.cross_entropy(s[i][mask[i]][None], pos[i:i + 1]) for i in range(b)]).mean()

    want_kd = (kl(s_start, t_start) + kl(s_end, t_end)) / 2
    want_ce = (ce_ref(s_start, pos_s) + ce_ref(s_end, pos_e)) / 2
    torch.testing.assert_close(kd, want_kd)
    torch.testing.assert_close(ce, want_ce)
    torch.testing.assert_close(loss, 0.3 * want_ce + 0.7 * want_kd)
    _, _, kd_same = qa_distillation_loss(s_start, s_end, s_start, s_end, pos_s, pos_e, mask, T)
    assert kd_same.abs() < 1e-6  # a student equal to its teacher has no KL


def test_squad_config_rejects_bad_values():
    with pytest.raises(ValueError, match="doc_stride"):
        SquadConfig(doc_stride=300).validate(384)
    with pytest.raises(ValueError, match="alpha"):
        SquadConfig(alpha_task=0, alpha_kl=0).validate(384)


def test_a_squad_d_folder_written_with_the_earlier_names_is_kept(tmp_path):
    """The committed SQuAD (D) folder predates the rename (its settings say alpha_ce for the span cross-entropy and
    alpha_kd for the KL): a rerun with the same weights, now alpha_task / alpha_kl, reads it as finished; other
    weights are still other settings."""
    import shutil
    from pathlib import Path

    committed = (Path(__file__).resolve().parents[1] / "results" / "experiments" / "minilm_study_20261202" / "runs" /
                 "eval" / "cpu_student" / "squad_d")  # the 2026-12-02 study's
    saved = json.loads((committed / "finetune.json").read_text())
    assert '"alpha_ce": 0.5, "alpha_kd": 0.5' in saved["kind"]  # the committed file as it is
    shutil.copytree(committed, tmp_path / "d")
    teacher, cfg = json.loads(saved["kind"][len("squad "):])["teacher"], FinetuneConfig(**saved["config"])
    df = run_squad(saved["model"], cfg, SquadConfig(max_eval_examples=600), teacher, tmp_path / "d", progress=False)
    assert df["score"].iloc[0] == pytest.approx(json.loads((committed / "seed0.json").read_text())["score"])
    with pytest.raises(ValueError, match=r"other settings \(kind\)"):
        run_squad(saved["model"], cfg, SquadConfig(max_eval_examples=600, alpha_kl=0.7), teacher, tmp_path / "d",
                  progress=False)


def test_run_squad_then_distil_from_the_finetuned_teacher(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = FinetuneConfig(max_seq_len=48, epochs=1, lr=1e-3, batch_size=8, seeds=1)
    opts = SquadConfig(doc_stride=16)
    t_out, d_out = tmp_path / "teacher_squad", tmp_path / "student_squad_d"
    t = run_squad(str(tiny["teacher"]), cfg, opts, output_dir=t_out, data_dir=tiny["data"], progress=False)
    rec = json.loads((t_out / "seed0.json").read_text())
    assert rec["comparable"] is False and rec["eval_examples"] + rec["train_examples"] == 36
    assert t["f1"][0] == pytest.approx(rec["metrics"]["f1"]) and 0 <= rec["metrics"]["exact_match"] <= rec["metrics"]["f1"]
    assert (t_out / "model" / "config.json").is_file()
    d = run_squad(str(tiny["student"]), cfg, opts, teacher=str(t_out / "model"), output_dir=d_out,
                  data_dir=tiny["data"], progress=False)
    assert json.loads((d_out / "seed0.json").read_text())["teacher"].endswith("teacher_squad/model")
    assert d["seeds_run"][0] == 1
    # finished seeds are read back, not rerun
    mtime = (d_out / "seed0.json").stat().st_mtime
    run_squad(str(tiny["student"]), cfg, opts, teacher=str(t_out / "model"), output_dir=d_out, data_dir=tiny["data"],
              progress=False)
    assert (d_out / "seed0.json").stat().st_mtime == mtime
    # a teacher with another vocabulary cannot be a (D) teacher
    from transformers import AutoTokenizer

    other = save_tiny_model(tmp_path / "other", vocab_delta=1)  # room for one more token
    tok = AutoTokenizer.from_pretrained(str(other))
    tok.add_tokens(["zzzz"])
    tok.save_pretrained(str(other))
    with pytest.raises(ValueError, match="another vocabulary"):
        run_squad(str(tiny["student"]), cfg, opts, teacher=str(other), output_dir=tmp_path / "x",
                  data_dir=tiny["data"], progress=False)


def test_run_squad_without_data_reports_not_run(tiny, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    df = run_squad(str(tiny["teacher"]), FinetuneConfig(max_seq_len=48, seeds=1), SquadConfig(doc_stride=16), output_dir=tmp_path / "o",
                   data_dir=empty, progress=False)
    assert df["score"][0] == "not run: no data" and df["f1"][0] == "not run: no data"
