"""The Ray executor, with Ray in local mode (``ray.init(num_cpus=2)``): the same artifacts as the local
executor, chunked or not; a failing session reported while the others complete; reruns redo only it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.batch import run_batch
from pipeline.errors import PosecapError
from pipeline.executors import InlineExecutor
from stages import config_sections, load_stages
from tests.engine import toy_stages as toy
from tests.engine.batch_sessions import STAGE_NAMES, assert_same_artifacts, make_batch_session, make_weight_files

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_executor():
    import os

    from pipeline.executors.ray_backend import RayExecutor

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    executor = RayExecutor()  # joins the Ray started above and leaves it running
    yield executor
    executor.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    return make_weight_files(tmp_path_factory.mktemp("weights"))


def _negative(x: int) -> int:
    if x < 0:
        raise PosecapError(f"item {x}: negative")
    return -x


def test_map_in_order_and_errors_come_back_as_one_line(ray_executor):
    assert ray_executor.name == "ray" and ray_executor.slots == 2
    assert ray_executor.map(_negative, [1, 2, 3]) == [-1, -2, -3]
    with pytest.raises(PosecapError) as info:
        ray_executor.map(_negative, [1, -5])
    assert str(info.value) == "item -5: negative"


def _batch(root: Path, weights: dict[str, Path], chunked: bool) -> list[Path]:
    """Three small sessions of different lengths and backends; ``chunked`` cuts pose2d and triangulate into tasks."""
    kinds = [{"backend": "bottomup"}, {"backend": "topdown", "boxes": "detect"}, {"backend": "bottomup"}]
    paths = []
    for i, pose2d in enumerate(kinds):
        paths.append(make_batch_session(root / f"s{i}", weights, frames=4 + 2 * i,
                                        pose2d={**pose2d, "task_frames": 2 if chunked else 0},
                                        triangulate={"task_frames": 400 if chunked else 0}))
    return paths


def test_batch_under_ray_chunked_is_byte_identical_to_local_unchunked(ray_executor, weights, tmp_path):
    stages, sections = load_stages(STAGE_NAMES), config_sections()
    local = run_batch(_batch(tmp_path / "local", weights, False), InlineExecutor(), stages, sections)
    remote = run_batch(_batch(tmp_path / "ray", weights, True), ray_executor, stages, sections)
    assert local.ok and remote.ok, (local, remote)
    for i in range(3):
        assert remote.sessions[i].ran == ("pose2d", "triangulate", "export")
        assert_same_artifacts(tmp_path / "local" / f"s{i}" / "session", tmp_path / "ray" / f"s{i}" / "session")
    # the lock the driver wrote under Ray makes a local rerun a no-op, and the other way round
    again = run_batch(_batch_configs(tmp_path / "ray"), InlineExecutor(), stages, sections)
    assert [o.ran for o in again.sessions] == [(), (), ()]


def _batch_configs(root: Path) -> list[Path]:
    return sorted(root.glob("s*/posecap.yaml"))


def test_failed_session_under_ray_reported_others_complete_rerun_redoes_only_it(ray_executor, weights, tmp_path):
    stages, sections = load_stages(STAGE_NAMES), config_sections()
    paths = _batch(tmp_path, weights, True)
    rig = tmp_path / "s1" / "session" / "calib" / "rig.yaml"
    good_rig = rig.read_text()
    data = yaml.safe_load(good_rig)
    del data["cameras"]["cam1"]["K"]
    rig.write_text(yaml.safe_dump(data))  # triangulate fails in its Ray task, after pose2d ran
    report = run_batch(paths, ray_executor, stages, sections)
    assert [o.ok for o in report.sessions] == [True, False, True]
    bad = report.sessions[1]
    assert bad.ran == ("pose2d",)
    assert bad.error.startswith("stage 'triangulate' failed: ") and "rig.yaml" in bad.error and "'K'" in bad.error
    assert "\n" not in bad.error and "Traceback" not in bad.error
    rig.write_text(good_rig)
    rerun = run_batch(paths, ray_executor, stages, sections)
    assert rerun.ok
    assert [o.ran for o in rerun.sessions] == [(), ("triangulate", "export"), ()]


def test_crash_in_a_ray_task_fails_only_its_session(ray_executor, tmp_path):
    paths = []
    for i in range(3):
        d = tmp_path / f"t{i}"
        d.mkdir()
        (d / "numbers.txt").write_text("1 2\n")
        cfg: dict = {"session_dir": "session"}
        if i == 1:
            cfg["total"] = {"crash_mid_write": True}
        (d / "posecap.yaml").write_text(yaml.safe_dump(cfg))
        paths.append(d / "posecap.yaml")
    report = run_batch(paths, ray_executor, toy.ALL, toy.SECTIONS)
    assert [o.ok for o in report.sessions] == [True, False, True]
    assert report.sessions[1].error == "RuntimeError: simulated crash in the middle of writing"
    assert not (tmp_path / "t1" / "session" / "b" / "total.yaml").exists()  # the atomic write left nothing
    shutil.rmtree(tmp_path / "t0" / "session" / "c")
    rerun = run_batch(paths, ray_executor, toy.ALL, toy.SECTIONS)
    assert rerun.sessions[0].ran == ("report",) and rerun.sessions[2].ran == ()
