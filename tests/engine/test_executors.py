"""The executor layer and run-batch without Ray: ordered maps, concurrent stages, failing sessions, the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline.batch import expand_configs, run_batch, summary_table
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError, PosecapError
from pipeline.executors import ExecutorParams, InlineExecutor, make_executor
from pipeline.executors.local import LocalPoolExecutor
from pipeline.runner import Runner
from tests.engine import toy_stages as toy


def _square(x: int) -> int:
    if x < 0:
        raise PosecapError(f"item {x}: negative")
    return x * x


class _TwoSlots(InlineExecutor):
    """In-process, but tells the runner two stages may run at once (the concurrent scheduler's path)."""

    slots = 2


def _toy_batch(tmp_path: Path, n: int = 3, broken: int | None = 1) -> list[Path]:
    paths = []
    for i in range(n):
        d = tmp_path / f"s{i}"
        d.mkdir(parents=True)
        (d / "numbers.txt").write_text(f"{i} 2 3\n")
        cfg: dict = {"session_dir": "session"}
        if i == broken:
            cfg["total"] = {"crash_mid_write": True}
        (d / "posecap.yaml").write_text(yaml.safe_dump(cfg))
        paths.append(d / "posecap.yaml")
    return paths


def test_map_keeps_item_order_and_waits_before_raising():
    ex = InlineExecutor()
    assert ex.map(_square, [3, 1, 2]) == [9, 1, 4]
    with pytest.raises(PosecapError, match="item -1"):
        ex.map(_square, [1, -1, -2])


@pytest.mark.slow
def test_process_pool_matches_inline():
    with LocalPoolExecutor(2) as pool:
        assert pool.map(_square, list(range(7))) == [x * x for x in range(7)]
        with pytest.raises(PosecapError, match="item -3"):
            pool.map(_square, [2, -3, -4])


def test_concurrent_scheduler_gives_the_sequential_result(tmp_path):
    seq, par = _toy_batch(tmp_path / "a", 1, None)[0], _toy_batch(tmp_path / "b", 1, None)[0]
    reports = []
    for cfg, ex in ((seq, InlineExecutor()), (par, _TwoSlots())):
        config = load_config(cfg, toy.SECTIONS)
        reports.append(Runner(toy.ALL, config, config.session_dir, show_progress=False, executor=ex).run())
    assert reports[0].ran == reports[1].ran == ["make", "total", "report"]
    for rel in ("a/numbers.npy", "b/total.yaml", "c/report.yaml"):
        assert (seq.parent / "session" / rel).read_bytes() == (par.parent / "session" / rel).read_bytes()
    config = load_config(par, toy.SECTIONS)
    again = Runner(toy.ALL, config, config.session_dir, show_progress=False, executor=_TwoSlots()).run()
    assert again.ran == [] and sorted(again.skipped_up_to_date) == ["make", "report", "total"]


@pytest.mark.parametrize("executor", [InlineExecutor(), _TwoSlots()], ids=["inline", "two-slots"])
def test_failed_session_is_reported_others_complete_rerun_redoes_only_it(tmp_path, executor):
    paths = _toy_batch(tmp_path)
    report = run_batch(paths, executor, stages=toy.ALL, sections=toy.SECTIONS)
    assert [o.ok for o in report.sessions] == [True, False, True]
    bad = report.sessions[1]
    assert bad.error == "RuntimeError: simulated crash in the middle of writing"
    assert "s1/posecap.yaml" in summary_table(report) and "FAILED" in summary_table(report)
    for i in (0, 2):
        assert (tmp_path / f"s{i}" / "session" / "c" / "report.yaml").is_file()
    # fix the broken session and rerun the whole batch: only it does any work
    paths[1].write_text(yaml.safe_dump({"session_dir": "session"}))
    rerun = run_batch(paths, executor, stages=toy.ALL, sections=toy.SECTIONS)
    assert rerun.ok
    assert [o.ran for o in rerun.sessions] == [(), ("total", "report"), ()]


def test_bad_config_fails_only_its_session(tmp_path):
    paths = _toy_batch(tmp_path, broken=None)
    paths[0].write_text(yaml.safe_dump({"session_dir": "session", "totl": {}}))
    report = run_batch(paths, InlineExecutor(), stages=toy.ALL, sections=toy.SECTIONS)
    assert [o.ok for o in report.sessions] == [False, True, True]
    assert "unknown key 'totl'; did you mean 'total'?" in report.sessions[0].error


def test_expand_configs_globs_and_errors(tmp_path, monkeypatch):
    paths = _toy_batch(tmp_path, broken=None)
    monkeypatch.chdir(tmp_path)
    assert expand_configs(["s*/posecap.yaml", "s1/posecap.yaml"]) == [Path(f"s{i}/posecap.yaml") for i in range(3)]
    with pytest.raises(ConfigError, match="no config file matches"):
        expand_configs(["nothing*/x.yaml"])
    with pytest.raises(ConfigError, match="config file not found"):
        expand_configs(["missing.yaml"])
    assert len(paths) == 3


def test_executor_section_and_validation():
    assert isinstance(make_executor(ExecutorParams()), InlineExecutor)
    pool = make_executor(ExecutorParams(workers=2))
    assert isinstance(pool, LocalPoolExecutor) and pool.slots == 2
    pool.close()  # never started: nothing to stop
    with pytest.raises(ValueError, match="workers"):
        ExecutorParams(workers=0)


def test_ray_missing_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as without the extra
    (tmp_path / "posecap.yaml").write_text("session_dir: session\n")
    code = main(["run", str(tmp_path / "posecap.yaml"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'posecap[ray]'" in err and "Traceback" not in err
    code = main(["run-batch", str(tmp_path / "posecap.yaml"), "--executor", "ray"])
    assert code == 2 and "posecap[ray]" in capsys.readouterr().err


def test_cli_run_batch_summary_and_exit_code(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({"session_dir": "empty"}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"session_dir": "bad", "pose2d": {"backend": "nope"}}))
    code = main(["-q", "run-batch", str(bad), str(empty), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert "bad.yaml" in lines[1] and "FAILED" in lines[1] and "pose2d.backend" in lines[1]
    assert "empty.yaml" in lines[2] and "stage 'crop' failed" in lines[2]
    assert lines[-1] == "0 of 2 session(s) ok, 2 failed"
    assert main(["-q", "run-batch", str(tmp_path / "none*.yaml")]) == 2
