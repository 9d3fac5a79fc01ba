"""The DAG engine on real files: order from declarations, caching, errors, crash safety."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config
from pipeline.errors import DagError
from pipeline.runner import Runner, State
from pipeline.stage import Stage, static_paths
from tests.engine import toy_stages as toy


def _session(tmp_path: Path, overrides: dict | None = None) -> Path:
    (tmp_path / "numbers.txt").write_text("1 2 3 4\n")
    cfg = {"session_dir": "session", **(overrides or {})}
    path = tmp_path / "posecap.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _runner(config_path: Path, stages=None) -> Runner:
    config = load_config(config_path, toy.SECTIONS)
    return Runner(stages or toy.ALL, config, config.session_dir, show_progress=False)


def test_order_is_derived_from_declared_paths(tmp_path):
    runner = _runner(_session(tmp_path))
    assert runner.dag.order() == ["make", "total", "report"]
    assert runner.dag.deps["report"] == {"make", "total"}


def test_cycle_is_reported_by_name(tmp_path):
    a = Stage("alpha", "1", toy.ReportParams, static_paths("y"), static_paths("x"), run=lambda c: None)
    b = Stage("beta", "1", toy.ReportParams, static_paths("x/file"), static_paths("y"), run=lambda c: None)
    config = load_config(None, {"alpha": toy.ReportParams, "beta": toy.ReportParams})
    with pytest.raises(DagError, match=r"cycle: (alpha -> beta -> alpha|beta -> alpha -> beta)"):
        Runner([a, b], config, tmp_path)


def test_missing_producer_is_reported_by_name(tmp_path):
    lonely = Stage("lonely", "1", toy.ReportParams, static_paths("nowhere/input.yaml"),
                   static_paths("out.yaml"), run=lambda c: None)
    config = load_config(None, {"lonely": toy.ReportParams})
    runner = Runner([lonely], config, tmp_path)
    assert runner.status()[0].state == State.BLOCKED
    with pytest.raises(DagError, match=r"stage 'lonely' needs nowhere/input.yaml, which does not exist"):
        runner.run(only="lonely")
    report = runner.run()
    assert report.ran == [] and "nowhere/input.yaml" in report.blocked["lonely"]


def test_second_run_runs_nothing(tmp_path):
    cfg = _session(tmp_path)
    assert _runner(cfg).run().ran == ["make", "total", "report"]
    again = _runner(cfg).run()
    assert again.ran == [] and again.skipped_up_to_date == ["make", "total", "report"]
    assert all(s.state == State.UP_TO_DATE for s in _runner(cfg).status())


def test_param_change_reruns_stage_and_dependents_only(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    cfg = _session(tmp_path, {"total": {"offset": 10.0}})
    status = {s.name: s for s in _runner(cfg).status()}
    assert status["make"].state == State.UP_TO_DATE
    assert status["total"].reasons == ("param `total.offset` changed",)
    assert status["report"].state == State.STALE
    assert _runner(cfg).run().ran == ["total", "report"]
    report = yaml.safe_load((tmp_path / "session/c/report.yaml").read_text())
    assert report["total"] == 20.0


def test_editing_an_input_reruns_its_readers(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    (tmp_path / "numbers.txt").write_text("1 2 3 5\n")
    status = {s.name: s for s in _runner(cfg).status()}
    assert status["make"].reasons == (f"input `{tmp_path / 'numbers.txt'}` changed",)
    assert _runner(cfg).run().ran == ["make", "total", "report"]


def test_hand_edited_intermediate_reruns_its_producer_and_readers(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    (tmp_path / "session/b/total.yaml").write_text("schema: posecap/total@1\ntotal: 99\n")
    status = {s.name: s for s in _runner(cfg).status()}
    assert status["total"].reasons == ("output `b/total.yaml` modified since the last run",)
    assert _runner(cfg).run().ran == ["total", "report"]


def test_deleted_output_reruns_its_producer(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    (tmp_path / "session/c/report.yaml").unlink()
    assert _runner(cfg).run().ran == ["report"]


def test_force_until_only(tmp_path):
    cfg = _session(tmp_path)
    assert _runner(cfg).run(until="total").ran == ["make", "total"]
    assert _runner(cfg).run(only="report").ran == ["report"]
    assert _runner(cfg).run(force=["total"]).ran == ["total", "report"]
    assert _runner(cfg).run(force=["all"]).ran == ["make", "total", "report"]
    with pytest.raises(DagError, match="unknown stage 'nope'"):
        _runner(cfg).run(only="nope")


def test_crash_while_writing_keeps_previous_artifact_and_lock(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    before = (tmp_path / "session/b/total.yaml").read_bytes()
    cfg = _session(tmp_path, {"total": {"offset": 1.0, "crash_mid_write": True}})
    with pytest.raises(RuntimeError, match="simulated crash"):
        _runner(cfg).run()
    assert (tmp_path / "session/b/total.yaml").read_bytes() == before
    assert not [p for p in (tmp_path / "session/b").iterdir() if p.name != "total.yaml"]
    status = {s.name: s for s in _runner(cfg).status()}
    assert status["total"].state == State.STALE  # not marked done with the new params


def test_skip_dependents_goes_on_with_the_rest(tmp_path):
    from pipeline.errors import PosecapError

    def boom(ctx):
        raise PosecapError("total: bad numbers")

    failing = dataclasses.replace(toy.TOTAL, run=boom)
    cfg = _session(tmp_path)
    report = _runner(cfg, [toy.MAKE, failing, toy.REPORT]).run(on_error="skip-dependents")
    assert report.ran == ["make"] and "total" in report.failed
    assert report.skipped_dependents == {"report": "upstream `total` did not run"}


def test_corrupt_lock_is_a_cache_miss_with_warning(tmp_path, caplog):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    (tmp_path / "session/.posecap/lock.yaml").write_text("stages: [this is: not: valid")
    with caplog.at_level(logging.WARNING, logger="posecap"):
        runner = _runner(cfg)
    assert "lock file unreadable" in caplog.text
    assert runner.run().ran == ["make", "total", "report"]


def test_unchanged_files_are_not_rehashed(tmp_path):
    cfg = _session(tmp_path)
    _runner(cfg).run()
    runner = _runner(cfg)
    runner.status()
    assert runner.lock.cache.hashed_bytes == 0


def test_two_runs_on_one_session_do_not_interleave(tmp_path):
    import fcntl

    from pipeline.errors import PosecapError

    cfg = _session(tmp_path)
    runner = _runner(cfg)
    (tmp_path / "session/.posecap").mkdir(parents=True, exist_ok=True)
    with open(tmp_path / "session/.posecap/run.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        with pytest.raises(PosecapError, match="another posecap run is working on this session"):
            runner.run()
    assert runner.run().ran == ["make", "total", "report"]


def test_optional_inputs_count_when_present_or_produced(tmp_path):
    reads_total = dataclasses.replace(toy.REPORT, inputs=static_paths("a"),
                                      optional_inputs=static_paths("b/total.yaml", "extra/notes.txt"))
    cfg = _session(tmp_path)
    runner = _runner(cfg, [toy.MAKE, toy.TOTAL, reads_total])
    assert runner.dag.deps["report"] == {"make", "total"}  # produced by total: counted
    node = runner.dag.nodes["report"]
    assert [node.rel(p) for p in node.inputs] == ["a", "b/total.yaml"]  # extra/notes.txt: absent, ignored
    assert runner.run().ran == ["make", "total", "report"]
    (tmp_path / "session/extra").mkdir()
    (tmp_path / "session/extra/notes.txt").write_text("now present")
    status = {s.name: s for s in _runner(cfg, [toy.MAKE, toy.TOTAL, reads_total]).status()}
    assert status["report"].reasons == ("input list changed: `extra/notes.txt`",)
    again = _runner(cfg, [toy.MAKE, toy.TOTAL, reads_total])
    assert again.run().ran == ["report"] and _runner(cfg, [toy.MAKE, toy.TOTAL, reads_total]).run().ran == []
