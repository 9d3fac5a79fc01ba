"""`posecap train`: argument parsing, a one-line error for a bad config, a tiny run in stream mode."""

from __future__ import annotations

import yaml

from pipeline.training.cli import build_arg_parser, main


def test_parser_options():
    args = build_arg_parser().parse_args(["configs/train_topdown.yaml", "--resume", "--steps", "5"])
    assert args.resume and args.steps == 5 and args.config == "configs/train_topdown.yaml"


def test_bad_config_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train: {stepz: 3}\n")
    assert main([str(path), "--no-progress"]) == 2
    assert "stepz" in capsys.readouterr().err
    path.write_text("model: {head: {kind: bottomup}}\n")  # top-down scenes for a bottom-up head
    assert main([str(path), "--no-progress"]) == 2


def test_tiny_stream_run(tmp_path, capsys):
    config = {
        "model": {"input_size": [32, 48], "backbone": {"stem": {"channels": [8, 16]}, "embed_dim": 16,
                                                       "num_heads": 2, "depth": 1}},
        "data": {"scene": {"render_size": [40, 60], "people": [1, 2]}, "source": "stream", "heldout_size": 8,
                 "render_workers": 1, "loader_workers": 1, "cache_dir": str(tmp_path / "cache")},
        "train": {"steps": 3, "batch_size": 4, "eval_every": 0, "checkpoint_every": 3, "threads": 1,
                  "out_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--no-progress"]) == 0
    assert "step 3: pck" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "best.yaml").exists()
