"""Command line: clear one-line errors with exit code 2, typed overrides, show-config, reproduce wiring."""
import importlib
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from tinydistil import cli
from tinydistil.config import DistillConfig, TeacherConfig, parse_value, replace
from tinydistil.presets import stage_config
from tinydistil.teacher import train_tokenizer

WORDS = "the cat dog sat on mat a big small red blue house tree river runs over under bird song day".split()


def _error(capsys) -> str:
    """The error message; asserts it is exactly one line, starting with 'error:', printed last on stderr."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    tail = err[err.index(lines[0]):]
    assert tail == lines[0] + "\n", f"error message is not a single final line: {tail!r}"
    return lines[0]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Folders: 'odd' (3-layer BERT + its tokenizer), 'small_vocab' (2 layers, 10 embeddings fewer than
    the tokenizer), 'empty' (no config.json)."""
    root = tmp_path_factory.mktemp("teachers")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10))) for _ in range(200)]
    out = {}
    for name, layers, vocab_delta in (("odd", 3, 0), ("small_vocab", 2, -10)):
        folder = root / name
        tok = train_tokenizer(iter(lines), 100, folder)
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=len(tok) + vocab_delta, hidden_size=16, num_hidden_layers=layers,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id)
        BertForMaskedLM(cfg).save_pretrained(folder)
        out[name] = folder
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no model here")
    out["empty"] = root / "empty"
    return out


# ------------------------------------------------------------------ errors -> exit code 2, one line
@pytest.mark.parametrize("argv, phrase", [
    (["distill", "--preset", "nope"], "unknown preset 'nope'"),
    (["show-config", "--preset", "nope"], "unknown preset 'nope'"),
    (["distill", "--preset", "smoke", "--no-such-field", "1"], "no_such_field"),
    (["distill", "--preset", "smoke", "--lr", "abc"], "--lr: cannot read 'abc' as float"),
    (["distill", "--preset", "smoke", "--batch-size", "1.5"], "--batch-size: cannot read '1.5'"),
    (["distill", "--preset", "smoke", "--packing", "maybe"], "--packing: cannot read 'maybe'"),
    (["distill", "--preset", "smoke", "--lr"], "overrides are written --field value"),
    (["distill", "--preset", "smoke", "--block-size", "4"], "block_size must be >= 8"),
    (["pretrain-teacher", "--preset", "t4"], "no teacher to pretrain"),
    (["ablate", "--preset", "smoke", "--table-only", "--variants", "no_ce"], "--table-only trains nothing"),
])
def test_cli_errors_without_running(argv, phrase, capsys):
    assert cli.main(argv) == 2
    assert phrase in _error(capsys)


def _distill(tmp_path, teacher):
    return cli.main(["distill", "--preset", "smoke", "--teacher", str(teacher),
                     "--output-dir", str(tmp_path / "student")])


def test_cli_teacher_without_config_json(tmp_path, teachers, capsys):
    assert _distill(tmp_path, teachers["empty"]) == 2
    assert "has no config.json" in _error(capsys)


def test_cli_teacher_missing_folder(tmp_path, capsys):
    assert _distill(tmp_path, tmp_path / "does-not-exist") == 2
    assert "has no config.json" in _error(capsys)


def test_cli_teacher_with_odd_layer_count(tmp_path, teachers, capsys):
    assert _distill(tmp_path, teachers["odd"]) == 2
    msg = _error(capsys)
    assert "3 layers" in msg and "student_layers" in msg


def test_cli_tokenizer_larger_than_teacher_vocab(tmp_path, teachers, capsys):
    assert _distill(tmp_path, teachers["small_vocab"]) == 2
    assert "do not belong together" in _error(capsys)


# ------------------------------------------------------------------ parse_value
def test_parse_value_types():
    d, t = DistillConfig(), TeacherConfig()
    cases = [
        (d, "lr", "1e-3", 1e-3, float),
        (d, "temperature", "2", 2.0, float),
        (d, "epochs", "3", 3.0, float),
        (d, "batch_size", "16", 16, int),
        (d, "max_steps", "0", 0, int),
        (d, "max_train_texts", "100", 100, int),
        (d, "max_train_texts", "none", None, type(None)),
        (d, "data_dir", "None", None, type(None)),
        (d, "data_dir", "/some/dir", "/some/dir", str),
        (d, "teacher", "bert-base-uncased", "bert-base-uncased", str),
        (d, "precision", "fp32", "fp32", str),
        (d, "student_layers", "[0,3]", [0, 3], list),
        (d, "student_layers", "0,2,5", [0, 2, 5], list),
        (d, "student_layers", "null", None, type(None)),
        (t, "hidden_size", "64", 64, int),
    ]
    for cfg, name, text, expected, typ in cases:
        got = parse_value(cfg, name, text)
        assert got == expected and type(got) is typ, (name, text, got)
    for text, expected in [("1", True), ("true", True), ("Yes", True), ("0", False), ("False", False),
                           ("no", False)]:
        got = parse_value(d, "packing", text)
        assert got is expected, text
        assert parse_value(d, "restrict_ce_to_mask", text) is expected


def test_parse_value_betas_through_replace_is_tuple():
    d = DistillConfig()
    for text in ("[0.9,0.99]", "0.9,0.99"):
        cfg = replace(d, betas=parse_value(d, "betas", text))
        assert cfg.betas == (0.9, 0.99) and isinstance(cfg.betas, tuple)


def test_parse_value_betas_is_tuple():
    got = parse_value(DistillConfig(), "betas", "[0.9,0.99]")
    assert got == (0.9, 0.99) and isinstance(got, tuple)


def test_betas_must_be_a_pair():
    with pytest.raises(ValueError, match="betas"):
        stage_config("smoke", "distill", betas=(0.9,))


@pytest.mark.parametrize("name, text", [("lr", "abc"), ("batch_size", "2.5"), ("packing", "maybe"),
                                        ("betas", "[0.9,"), ("student_layers", "x")])
def test_parse_value_bad_values(name, text):
    with pytest.raises(ValueError, match=f"--{name.replace('_', '-')}: cannot read"):
        parse_value(DistillConfig(), name, text)


def test_parse_value_unknown_field():
    with pytest.raises(ValueError, match="unknown TeacherConfig field 'temperature'"):
        parse_value(TeacherConfig(), "temperature", "2")


# ------------------------------------------------------------------ show-config
def _show(capsys, argv):
    assert cli.main(["show-config", *argv]) == 0
    out = capsys.readouterr().out
    dec, stages, i = json.JSONDecoder(), {}, 0
    while i < len(out):
        name, rest = out[i:].split(" ", 1)
        obj, end = dec.raw_decode(rest)
        stages[name.strip()] = obj
        i += len(name) + 1 + end
        while i < len(out) and out[i].isspace():
            i += 1
    return stages


def test_show_config_reflects_override(capsys):
    base = _show(capsys, ["--preset", "smoke"])
    assert set(base) == {"teacher", "distill", "downstream"}
    assert base["downstream"]["glue"]["seeds"] == 1 and "budget_min" in base["downstream"]
    assert base["distill"]["lr"] == DistillConfig.lr and base["teacher"]["lr"] == 1e-3
    shown = _show(capsys, ["--preset", "smoke", "--lr", "0.0123", "--max-steps", "7"])
    for stage in ("teacher", "distill"):
        assert shown[stage]["lr"] == 0.0123 and shown[stage]["max_steps"] == 7
        assert {k: v for k, v in shown[stage].items() if k not in ("lr", "max_steps")} == \
               {k: v for k, v in base[stage].items() if k not in ("lr", "max_steps")}


def test_show_config_hub_preset_has_only_distill(capsys):
    shown = _show(capsys, ["--preset", "t4", "--temperature", "3.5"])
    assert set(shown) == {"distill", "downstream"} and shown["distill"]["temperature"] == 3.5
    assert shown["distill"]["teacher"] == "bert-base-uncased"


def test_show_config_distill_only_override(capsys):
    shown = _show(capsys, ["--preset", "smoke", "--temperature", "3.5"])
    assert shown["distill"]["temperature"] == 3.5


def test_the_earlier_flag_names_still_work_and_say_so(capsys):
    """--alpha-ce (the reference distiller's name for the soft-target weight) is a deprecated alias of --alpha-kl;
    for `squad` it keeps its SQuAD meaning, the span cross-entropy's weight (now --alpha-task; --alpha-kd: --alpha-kl)."""
    assert cli.main(["show-config", "--preset", "smoke", "--alpha-ce", "3.0"]) == 0
    out, err = capsys.readouterr()
    distill = json.JSONDecoder().raw_decode(out[out.index("distill ") + len("distill "):])[0]
    assert distill["alpha_kl"] == 3.0 and "alpha_ce" not in distill
    assert "--alpha-ce is the earlier name of --alpha-kl" in err
    opts, over = cli._options("squad", ["--model", "m", "--alpha-ce", "0.3", "--alpha-kd", "0.7"])
    assert opts["squad"] == {"alpha_task": 0.3, "alpha_kl": 0.7} and over == {}
    assert "--alpha-kd is the earlier name of --alpha-kl" in capsys.readouterr().err


# ------------------------------------------------------------------ reproduce wiring (Trainer faked)
class _FakeTrainer:
    calls: list = []

    def __init__(self, cfg, resume=False, progress=True):
        self.cfg = cfg
        _FakeTrainer.calls.append((cfg, resume))

    def setup(self):
        return self

    def train(self):
        return Path(self.cfg.output_dir) / "model"


@pytest.fixture
def fake_trainer(monkeypatch):
    _FakeTrainer.calls = []
    # the package exports a function named distill, so fetch the module itself
    monkeypatch.setattr(importlib.import_module("tinydistil.train"), "Trainer", _FakeTrainer)
    return _FakeTrainer.calls


def test_reproduce_runs_teacher_then_distill(fake_trainer, tmp_path):
    root = tmp_path / "run"
    assert cli.main(["reproduce", "--preset", "smoke", "--max-steps", "3", "--output-dir", str(root),
                     "--skip", "downstream"]) == 0
    (t_cfg, t_resume), (d_cfg, d_resume) = fake_trainer
    assert isinstance(t_cfg, TeacherConfig) and isinstance(d_cfg, DistillConfig)
    assert t_resume and d_resume
    assert t_cfg.max_steps == 3 and d_cfg.max_steps == 3
    # the distillation stage uses the teacher the first stage produced
    assert Path(d_cfg.teacher) == Path(t_cfg.output_dir) / "model"
    summary = json.loads((root / "smoke" / "results" / "smoke" / "reproduce.json").read_text())
    assert summary["preset"] == "smoke" and list(summary["stage_wall_time_s"]) == ["teacher", "distill"]
    assert "mlm_eval" in summary["skipped"] and summary["git_sha"]


def test_reproduce_distill_only_override(fake_trainer, tmp_path):
    assert cli.main(["reproduce", "--preset", "smoke", "--temperature", "3", "--output-dir", str(tmp_path),
                     "--skip", "downstream"]) == 0
    assert fake_trainer[-1][0].temperature == 3.0


def test_reproduce_output_dir_override_keeps_stages_apart(fake_trainer, tmp_path):
    assert cli.main(["reproduce", "--preset", "smoke", "--output-dir", str(tmp_path / "run"), "--skip",
                     "downstream"]) == 0
    (t_cfg, _), (d_cfg, _) = fake_trainer
    assert Path(t_cfg.output_dir) != Path(d_cfg.output_dir)
    assert Path(d_cfg.teacher) == Path(t_cfg.output_dir) / "model"


def test_reproduce_cpu_prepares_minilm_then_distils_it(fake_trainer, tmp_path):
    assert cli.main(["reproduce", "--preset", "cpu", "--output-dir", str(tmp_path), "--skip", "downstream"]) == 0
    (t_cfg, _), (d_cfg, _) = fake_trainer
    assert t_cfg.init_from == "all-MiniLM-L6-v2" and t_cfg.grow_from is None
    assert Path(d_cfg.teacher) == Path(t_cfg.output_dir) / "model"


def test_reproduce_unknown_skip_stage_is_a_clear_error(capsys):
    assert cli.main(["reproduce", "--preset", "smoke", "--skip", "glu"]) == 2
    assert "unknown stage 'glu'" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: python -m tinydistil {command}")
    assert cli.COMMANDS[command][1].split()[0] in out  # the command's own description, not the top-level one
    assert ("--preset" in out) == cli.COMMANDS[command][2]


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from tinydistil import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_preset_is_refused_where_it_means_nothing(capsys):
    assert cli.main(["glue", "--preset", "cpu", "--model", "x"]) == 2
    assert "unknown option --preset for glue" in capsys.readouterr().err
