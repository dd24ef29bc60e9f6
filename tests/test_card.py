"""Model cards: written with every saved model, parsed back by huggingface_hub, naming the run's own numbers;
the base model and licence follow the teacher; push_to_hub stops in one line before sending anything."""
import json

import pytest
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from tinydistil.card import lineage, write_model_card
from tinydistil.presets import stage_config
from tinydistil.train import distill


@pytest.fixture(scope="module")
def student_run(smoke_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "student"
    distill(stage_config("smoke", "distill", teacher=str(smoke_teacher), output_dir=str(out)), progress=False)
    return out


def test_every_saved_model_has_a_card_naming_its_run(student_run, smoke_teacher):
    summary = json.loads((student_run / "summary.json").read_text())
    card = ModelCard.load(student_run / "model" / "README.md")
    data = card.data.to_dict()
    assert ModelCardData(**data).to_dict() == data  # the metadata round-trips through huggingface_hub
    assert (data["license"], data["pipeline_tag"], data["library_name"]) == ("apache-2.0", "fill-mask", "transformers")
    assert data["datasets"] == ["Salesforce/wikitext"] and "base_model" not in data  # a teacher trained from scratch
    assert data["tinydistil"]["tokens_seen"] == summary["tokens"] and data["tinydistil"]["steps"] == summary["steps"]
    text = card.text
    assert f"{summary['steps']} updates, {summary['tokens']:,} tokens seen" in text
    assert f"{summary['train_wall_time_s']} s on" in text
    assert "5·T²·KL" in text and "2·MLM" in text and "T = 2" in text and "[0] of the teacher's 2 layers" in text
    # the teacher saved by its own run has one too
    assert ModelCard.load(smoke_teacher / "README.md").data.to_dict()["tinydistil"]["kind"] == "teacher"


def test_measured_results_go_in_the_card_with_the_papers_beside_them(student_run):
    rows = [{"task": "SST-2 (dev)", "value": "78.6", "paper": "91.3"}]
    path = write_model_card(student_run, mlm_accuracy=0.2336, downstream=rows, paper_model="DistilBERT")
    card = ModelCard.load(path)
    (result,) = model_index_to_eval_results(card.data.to_dict()["model-index"])[1]
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 23.36, "validation")
    assert "23.36 %" in card.text and "| SST-2 (dev) | 78.6 | 91.3 |" in card.text
    assert "paper's DistilBERT (Sanh et al., 2019, DistilBERT; not this model)" in card.text


def test_base_model_and_licence_follow_the_teacher(tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    ModelCard(f"---\n{ModelCardData(base_model='sentence-transformers/all-MiniLM-L6-v2', license='apache-2.0', tinydistil={'base_model_revision': 'abc'}).to_yaml()}\n---\n").save(teacher / "README.md")
    base, rev, how, licence = lineage({"_kind": "DistillConfig", "teacher": str(teacher)}, {})
    assert (base, rev, licence) == ("sentence-transformers/all-MiniLM-L6-v2", "abc", {"license": "apache-2.0"})
    base, rev, how, licence = lineage({"_kind": "TeacherConfig", "init_from": "all-MiniLM-L6-v2"},
                                      {"teacher_source": {"source": "package"}})
    assert (base, rev, licence["license"]) == ("sentence-transformers/all-MiniLM-L6-v2",
                                               "1110a243fdf4706b3f48f1d95db1a4f5529b4d41", "apache-2.0")
    assert "pinned package" in how
    assert lineage({"_kind": "DistillConfig", "teacher": "bert-base-uncased"}, {})[3] == {"license": "apache-2.0"}
    # any other base model: its own licence applies, the card points at it
    assert lineage({"_kind": "DistillConfig", "teacher": "someone/their-bert"}, {})[3] == {
        "license": "other", "license_name": "same-as-base-model", "license_link": "https://huggingface.co/someone/their-bert"}
    # a local teacher without our card: nothing to rely on
    (tmp_path / "bare").mkdir()
    assert lineage({"_kind": "DistillConfig", "teacher": str(tmp_path / "bare")}, {})[3]["license"] == "other"


def test_push_to_hub_stops_in_one_line_without_token_or_network(student_run, monkeypatch, tmp_path, capsys):
    import huggingface_hub

    from tinydistil.cli import main

    sent = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda *a, **k: sent.append("create"))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda *a, **k: sent.append("upload"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token either
    argv = ["export", "--model", str(student_run / "model"), "--push-to-hub", "me/tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Hugging Face token") and "\n" not in err

    def offline(self, *a, **k):
        raise ConnectionError("Name or service not known")

    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", offline)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Hugging Face hub" in err and "nothing was uploaded" in err and "\n" not in err
    assert sent == []  # nothing created, nothing sent
