"""The task-agnostic fine-tuning loop: it learns, it keeps the epoch `select` prefers, batches group lengths,
predictions come back in dataset order, bad models / configs fail with a clear ValueError."""
import datasets
import numpy as np
import pytest
import torch

from tiny_downstream import fixture_data, one_thread, synthetic_rows, tiny_models  # noqa: F401
from tinydistil.config import replace
from tinydistil.eval.finetune import (FinetuneConfig, finetune, length_grouped_batches, load_classifier, predict,
                                      tokenize)
from tinydistil.hf import load_tokenizer


def _tokenized(tok, rows, max_len=64):
    ds = datasets.Dataset.from_dict({"sentence": [s for s, _ in rows], "label": [y for _, y in rows]})
    return tokenize(ds, tok, ("sentence",), max_len)


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_finetune_learns_synthetic_task(tiny_models, kind):
    """'good' vs 'bad' sentences: a random tiny model reaches high dev accuracy within 3 epochs."""
    tok = load_tokenizer(str(tiny_models[kind]))
    train, dev = _tokenized(tok, synthetic_rows(400, 1)), _tokenized(tok, synthetic_rows(100, 2))
    cfg = FinetuneConfig(lr=1e-3, batch_size=16, epochs=3)
    model = load_classifier(str(tiny_models[kind]), 2, tok, seed=0)
    before = (predict(model, tok, dev, cfg)["logits"].argmax(-1) == np.array(dev["labels"])).mean()
    res = finetune(model, tok, train, cfg, seed=0, progress=False)
    acc = (predict(res.model, tok, dev, cfg)["logits"].argmax(-1) == np.array(dev["labels"])).mean()
    assert res.steps == 3 * 25 and res.best_epoch == 3 and res.epoch_scores == []
    assert acc >= 0.95 > before + 0.2, (before, acc)


def test_finetune_same_seed_same_result(tiny_models):
    tok = load_tokenizer(str(tiny_models["bert"]))
    train, dev = _tokenized(tok, synthetic_rows(64, 1)), _tokenized(tok, synthetic_rows(16, 2))
    cfg = FinetuneConfig(lr=1e-3, batch_size=16, epochs=1)
    outs = []
    for seed in (0, 0, 1):
        res = finetune(load_classifier(str(tiny_models["bert"]), 2, tok, seed=seed), tok, train, cfg, seed,
                       progress=False)
        outs.append(predict(res.model, tok, dev, cfg)["logits"])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.allclose(outs[0], outs[2])


def test_select_keeps_best_epoch(tiny_models):
    """select() scores 0.2, 0.9, 0.5 after epochs 1-3: the returned model holds epoch 2's weights."""
    tok = load_tokenizer(str(tiny_models["bert"]))
    train = _tokenized(tok, synthetic_rows(32, 1))
    snapshots, scripted = [], iter([0.2, 0.9, 0.5])

    def select(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scripted)

    cfg = FinetuneConfig(lr=1e-3, batch_size=16, epochs=3)
    res = finetune(load_classifier(str(tiny_models["bert"]), 2, tok), tok, train, cfg, 0, select=select,
                   progress=False)
    assert res.epoch_scores == [0.2, 0.9, 0.5] and res.best_epoch == 2
    state = res.model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)
    assert not all(torch.equal(state[k], snapshots[2][k]) for k in state)


def test_regression_head(tiny_models):
    tok = load_tokenizer(str(tiny_models["bert"]))
    rows = [(s, 5.0 * y) for s, y in synthetic_rows(64, 1)]
    ds = datasets.Dataset.from_dict({"sentence": [s for s, _ in rows], "label": [y for _, y in rows]})
    train = tokenize(ds, tok, ("sentence",), 64)
    model = load_classifier(str(tiny_models["bert"]), 1, tok, regression=True)
    assert model.config.problem_type == "regression"
    res = finetune(model, tok, train, FinetuneConfig(lr=1e-3, batch_size=16, epochs=1), 0, progress=False)
    out = predict(res.model, tok, train, FinetuneConfig())["logits"]
    assert out.shape == (64, 1) and np.isfinite(out).all()


def test_predict_returns_dataset_order(tiny_models):
    """Evaluation batches are sorted by length; rows must come back in the dataset's order."""
    tok = load_tokenizer(str(tiny_models["distilbert"]))
    rows = synthetic_rows(40, 3)
    ds = _tokenized(tok, rows)
    model = load_classifier(str(tiny_models["distilbert"]), 2, tok, seed=0)
    cfg = FinetuneConfig(eval_batch_size=7)
    batched = predict(model, tok, ds, cfg)["logits"]
    one_by_one = np.concatenate([predict(model, tok, ds.select([i]), cfg)["logits"] for i in range(len(ds))])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_length_grouped_batches_cover_everything_once():
    lengths = [((i * 37) % 50) + 1 for i in range(300)]
    batches = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0), mega=5)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(300)) and max(len(b) for b in batches) == 8
    # within a mega-batch of 40, lengths are sorted: each batch spans far less than the full 1..50 range
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 15
    again = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(0), mega=5)
    other = length_grouped_batches(lengths, 8, torch.Generator().manual_seed(1), mega=5)
    assert again == batches and other != batches


def test_tokenize_pairs_truncates_and_keeps_labels(tiny_models):
    tok = load_tokenizer(str(tiny_models["bert"]))
    ds = datasets.Dataset.from_dict({"a": ["good " * 50, "bad day"], "b": ["the day", "good " * 50], "label": [1, 0],
                                     "idx": [0, 1]})
    out = tokenize(ds, tok, ("a", "b"), 16)
    assert out.column_names == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    assert [len(x) for x in out["input_ids"]] == [16, 16] and out["labels"] == [1, 0]
    with pytest.raises(ValueError, match="lacks columns"):
        tokenize(ds, tok, ("a", "missing"), 16)


def test_model_folder_without_tokenizer(tiny_models):
    with pytest.raises(ValueError, match="has no tokenizer.*save_pretrained"):
        load_tokenizer(str(tiny_models["no_tokenizer"]))


def test_model_folder_without_config(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        load_tokenizer(str(tmp_path))


def test_tokenizer_larger_than_embeddings(tiny_models):
    folder = str(tiny_models["small_vocab"])
    with pytest.raises(ValueError, match="do not belong together"):
        load_classifier(folder, 2, load_tokenizer(folder))


@pytest.mark.parametrize("change, phrase", [({"lr": 0}, "lr must be > 0"), ({"epochs": 0}, "epochs must be >= 1"),
                                            ({"seeds": 0}, "seeds must be >= 1"),
                                            ({"max_train_examples": 0}, "max_train_examples"),
                                            ({"precision": "fp8"}, "precision must be")])
def test_config_validation(change, phrase):
    with pytest.raises(ValueError, match=phrase):
        replace(FinetuneConfig(), **change)


def test_config_defaults_are_bert_style():
    cfg = FinetuneConfig()
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.warmup_frac, cfg.weight_decay, cfg.max_seq_len, cfg.seeds) == \
           (5e-5, 32, 3, 0.1, 0.01, 128, 5)
    assert cfg.seed_list == [0, 1, 2, 3, 4] and cfg.max_train_examples is None


def test_fp16_on_cpu_is_refused(tiny_models):
    tok = load_tokenizer(str(tiny_models["bert"]))
    train = _tokenized(tok, synthetic_rows(8, 1))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        finetune(load_classifier(str(tiny_models["bert"]), 2, tok), tok, train,
                 FinetuneConfig(precision="fp16", device="cpu"), 0, progress=False)
