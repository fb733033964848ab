"""Configuration contract and CLI behaviour: defaults, overrides, validation, exit codes."""

import subprocess
import sys

import pytest
import yaml

from deepcascade.cli import build_parser, main
from deepcascade.config import Config, build_config, parse_set, to_commented_yaml


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "deepcascade", *args], capture_output=True, text=True)


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("config", "features", "train", "translate", "prepare", "demo"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", ["config", "features", "train", "translate", "prepare", "demo"])
def test_subcommand_help_shows_defaults(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: deepcascade" in out
    if cmd != "prepare":  # prepare's options live on its kind sub-parser
        assert "(default:" in out


def test_config_preset_is_complete_and_round_trips(capsys):
    assert main(["config", "--preset", "default"]) == 0
    text = capsys.readouterr().out
    parsed = yaml.safe_load(text)
    assert parsed == Config().to_dict()  # every field, with its default
    # every field is commented
    for section, fields in Config().to_dict().items():
        if isinstance(fields, dict):
            for key in fields:
                line = next(i for i, l in enumerate(text.splitlines()) if l.strip().startswith(f"{key}:"))
                assert text.splitlines()[line - 1].strip().startswith("#")
    assert build_config(extra=parsed).to_dict() == Config().to_dict()


def test_contract_defaults():
    c = Config()
    assert (c.data.image_size, c.data.load_size) == (224, 256)
    assert (c.backbone.name, c.backbone.weights, c.backbone.relu) == ("vgg19", "imagenet", False)
    assert (c.normalization.scheme, c.normalization.k) == ("clamp", 3.0)
    assert (c.engine.device, c.engine.precision) == ("auto", "fp32")
    assert (c.invert.levels, c.invert.batch_size, c.invert.lr) == ([5, 4, 3], 25, 1e-4)
    assert (c.deep.batch_size, c.deep.n_critic, c.deep.lambda_gp, c.deep.lambda_cycle, c.deep.lambda_identity) == (
        10, 4, 10.0, 100.0, 100.0)
    assert (c.cascade.final_level, c.cascade.lambda_rec, c.cascade.lambda_up) == (3, 100.0, 0.0)


def test_yaml_then_set_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data: {image_size: 64, load_size: 80}\ninvert: {levels: [5, 4, 3, 2]}\n")
    cfg = build_config(f, ["invert.levels=[5,4]", "cascade.final_level=4", "engine.precision=bf16"])
    assert cfg.data.image_size == 64 and cfg.invert.levels == [5, 4] and cfg.engine.precision == "bf16"
    assert build_config(None, ["invert.lr=1e-3"]).invert.lr == 1e-3  # YAML 1.1 reads this as a string
    assert parse_set(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


@pytest.mark.parametrize("override, field", [
    ("data.imagesize=64", "data.imagesize"),          # unknown key
    ("data.image_size=abc", "data.image_size"),      # wrong type
    ("normalization.k=-1", "normalization.k"),       # out of range
    ("engine.precision=fp8", "engine.precision"),    # not a choice
    ("data.image_size=100", "data.image_size"),      # not divisible by 16
    ("invert.levels=[7]", "invert.levels"),          # level out of range
])
def test_validation_names_field_exit_2(override, field):
    r = run_cli("config", "--set", override)
    assert r.returncode == 2
    assert field in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_flag_and_missing_file_exit_2(tmp_path):
    r = run_cli("config", "--no-such-flag")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run_cli("train", str(tmp_path / "missing.yaml"), "--stage", "invert")
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "Traceback" not in r.stderr


def test_missing_data_folder_is_named(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"data: {{domain_a: {tmp_path / 'nope'}, domain_b: {tmp_path}, image_size: 32, load_size: 32}}\n"
                 "backbone: {weights: random}\n")
    r = run_cli("train", str(f), "--stage", "prepare", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2, r.stderr
    assert "data.domain_a" in r.stderr and "Traceback" not in r.stderr


def test_empty_domain_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"")
    (tmp_path / "b").mkdir()
    f = tmp_path / "c.yaml"
    f.write_text(f"data: {{domain_a: {tmp_path / 'a'}, domain_b: {tmp_path / 'b'}, image_size: 32, load_size: 32}}\n"
                 "backbone: {weights: random}\n")
    r = run_cli("train", str(f), "--stage", "prepare", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2
    assert "no usable image" in r.stderr and "Traceback" not in r.stderr


def test_commented_yaml_mentions_choices():
    text = to_commented_yaml(Config())
    assert "one of: clamp, tanh" in text and "one of: fp32, bf16, fp16" in text


def test_parser_builds_without_side_effects():
    # building the parser imports every command module; none may fail or download anything
    assert build_parser().prog == "deepcascade"
