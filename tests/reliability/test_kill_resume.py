"""Crash anywhere: SIGKILL ``posecap run`` at random moments in every stage, rerun, compare.

One uninterrupted run of a reduced sample session (``sample.py``) gives the reference artifacts
and each stage's time window. Each kill then starts from the session as it stood before its
stage (the reference session with that stage's and every later stage's outputs and lock entries
removed, at the same absolute path), starts ``posecap run``, waits for the stage's ``running``
log line, sleeps a random fraction of the stage's reference duration and kills the whole process
group with SIGKILL. Then:

- the lock is readable and every stage it records as done has exactly the outputs it recorded
  (no stage is marked done whose outputs are incomplete), and every YAML / npz file in the
  session parses (no torn artifact under a final name);
- a plain ``posecap run`` exits 0, and the fingerprint of its artifacts (every array and every
  YAML document, timing fields aside) equals the reference's;
- no temporary file of the atomic writer is left behind.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.artifacts import read_yaml
from pipeline.hashing import HashCache
from pipeline.lock import LOCK_SCHEMA, Lock
from tests.reliability.harness import (
    WatchedRun,
    diff_fingerprints,
    fingerprint,
    load_entry,
    posecap,
    temp_leftovers,
)
from tests.reliability.sample import make_sample

# kills per stage (22 in all): fewer where a kill costs a rerun of the whole pipeline
KILLS = {"crop": 2, "calibrate_intrinsics": 2, "calibrate_extrinsics": 3, "pose2d": 4, "sync": 2,
         "triangulate": 3, "visualize": 3, "export": 3}
SEED = 15


def stage_outputs(config: Path) -> dict[str, list[Path]]:
    """Stage name -> its declared output paths, in the engine's run order."""
    from pipeline.config import load_config
    from pipeline.dag import build_dag
    from stages import config_sections, load_stages

    cfg = load_config(config, config_sections())
    dag = build_dag(load_stages(), cfg, cfg.session_dir, False)
    return {name: list(dag.nodes[name].outputs) for name in dag.order()}


def restore_before(reference: Path, session: Path, outputs: dict[str, list[Path]], stage: str) -> None:
    """Make ``session`` the reference session as it stood just before ``stage`` ran."""
    order = list(outputs)
    later = order[order.index(stage):]
    drop = [p.relative_to(session) for name in later for p in outputs[name]]

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).relative_to(reference)
        return [n for n in names if (rel / n) in drop]

    if session.exists():
        shutil.rmtree(session)
    shutil.copytree(reference, session, ignore=ignore)
    lock = Lock.load(session)
    for name in later:
        lock.stages.pop(name, None)
    lock.save()


def assert_consistent(session: Path, outputs: dict[str, list[Path]], what: str) -> None:
    """Every stage the lock records as done has its recorded outputs; every artifact parses."""
    lock_path = session / ".posecap" / "lock.yaml"
    if lock_path.exists():
        read_yaml(lock_path, LOCK_SCHEMA)  # a torn lock would be an ArtifactError here
    lock = Lock.load(session)
    cache = HashCache()
    for name, rec in lock.stages.items():
        for p in outputs[name]:
            rel = str(p.relative_to(session))
            assert cache.digest(p) == rec.outputs.get(rel), f"{what}: stage {name} is marked done but {rel} differs"
    for path in session.rglob("*"):
        rel = path.relative_to(session)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), f"{what}: {rel} is not a mapping"
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                for key in npz.files:
                    npz[key]


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_gives_the_same_artifacts(tmp_path):
    t_start = time.monotonic()
    config = make_sample(tmp_path / "work")
    session = tmp_path / "work" / "session"
    reference = tmp_path / "reference"

    ref_run = WatchedRun.start(["run", str(config)])
    assert ref_run.wait(900) == 0, "\n".join(ref_run.lines[-30:])
    shutil.copytree(session, reference)
    want = fingerprint(session)
    outputs = stage_outputs(config)
    assert set(KILLS) == set(outputs), f"stages changed: {list(outputs)}"
    starts = {s: t for t, s, kind in ref_run.events if kind == "running"}
    ends = {s: t for t, s, kind in ref_run.events if kind == "done"}
    duration = {s: max(ends[s] - starts[s], 0.005) for s in outputs}

    rng = random.Random(SEED)
    plan = [(stage, rng.random()) for stage, n in KILLS.items() for _ in range(n)]
    landed: dict[str, int] = {}
    log = []
    for i, (stage, fraction) in enumerate(plan):
        restore_before(reference, session, outputs, stage)
        run = WatchedRun.start(["run", str(config)])
        assert run.wait_for(stage), f"kill {i}: {stage} never started\n" + "\n".join(run.lines[-20:])
        time.sleep(fraction * duration[stage])
        where = run.running_stage() if run.proc.poll() is None else "(finished)"
        run.kill()
        lock = Lock.load(session)
        if where == stage and stage in lock.stages:
            where = f"{stage} (after its lock entry)"
        landed[where] = landed.get(where, 0) + 1
        log.append(f"kill {i}: {stage} at {fraction:.2f} x {duration[stage]:.2f} s -> landed in {where}")
        assert_consistent(session, outputs, f"kill {i} ({stage})")

        proc = posecap("-q", "run", str(config), timeout=900)
        assert proc.returncode == 0, f"kill {i} ({stage}): rerun failed\n{proc.stderr[-3000:]}"
        diff = diff_fingerprints(want, fingerprint(session))
        # bit-identical: every array and YAML entry, timing fields aside (OpenCV's solvers run on one
        # thread, so their partial sums add up in the same order in every process)
        assert not diff, f"kill {i} ({stage}): rerun differs from the uninterrupted run:\n" + "\n".join(
            f"{d}: {str(load_entry(reference, d.split(' ', 1)[1]))[:1500]}\n  vs "
            f"{str(load_entry(session, d.split(' ', 1)[1]))[:1500]}" if d.startswith("differs ") else d
            for d in diff[:5])
        assert not temp_leftovers(session), f"kill {i} ({stage}): temporary files left: {temp_leftovers(session)}"
        assert set(Lock.load(session).stages) == set(outputs)
    print("\n".join(log))
    print(f"{len(plan)} kills in {time.monotonic() - t_start:.0f} s; landed: {landed}")
    assert len(plan) >= 20
    missed = sorted(s for s in outputs if not landed.get(s))
    assert not missed, f"no kill landed inside {missed}:\n" + "\n".join(log)
    status = posecap("status", str(config))
    assert status.returncode == 0 and "stale" not in status.stdout and "never run" not in status.stdout, status.stdout
