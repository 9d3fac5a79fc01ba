"""Helpers for the reliability tests: the CLI in a subprocess, kills, and artifact fingerprints.

A fingerprint maps every ``.npz``/``.npy`` array and every YAML document of a session folder to a
digest. YAML is compared after parsing, with the fields that only record timing removed
(``TIMING_KEYS``), so two runs that computed the same results have the same fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]

# YAML keys whose values are wall-clock measurements or count the work a run did (less after resuming)
TIMING_KEYS = frozenset({
    "finished_at", "duration_s", "timing", "camera_timing", "seconds", "elapsed_s", "frames_per_s",
    "resumed_at_frame", "frames_computed", "files",
    "detector_frames",  # pose2d: detector passes this process ran (fewer after resuming from checkpoints)
})
# arrays that identify a cache by its source file's modification time (a timestamp, so a timing field):
# the board-detection caches' ``key`` hashes the stream's (name, size, mtime_ns)
TIMING_ARRAYS = frozenset({"key"})


def cli_env() -> dict[str, str]:
    """The environment every posecap subprocess gets: one thread, the repository importable."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def posecap(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline.cli ARGS`` to completion and capture its output."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``posecap: error:`` line of a failed run; fails the test on a traceback or silence."""
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("posecap: error:")]
    assert len(lines) == 1, err
    return lines[0]


@dataclass
class WatchedRun:
    """A ``posecap run`` in its own process group whose log lines are timed as they arrive.

    ``events`` holds ``(seconds since start, stage, "running" | "done")``.
    """

    proc: subprocess.Popen
    started: float
    events: list[tuple[float, str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, args: Sequence[str]) -> WatchedRun:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=cli_env(), start_new_session=True)
        run = cls(proc, time.monotonic())
        threading.Thread(target=run._read, daemon=True).start()
        return run

    def _read(self) -> None:
        buf = b""
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):
            buf += chunk
            *done, buf = buf.replace(b"\r", b"\n").split(b"\n")
            now = time.monotonic() - self.started
            with self._cond:
                for raw in done:
                    line = raw.decode(errors="replace")
                    self.lines.append(line)
                    parts = line.split(": ")
                    if len(parts) >= 3 and parts[0] == "posecap":
                        if parts[2].startswith("running ("):
                            self.events.append((now, parts[1], "running"))
                        elif parts[2].startswith("done in "):
                            self.events.append((now, parts[1], "done"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, stage: str, timeout: float = 300) -> bool:
        """Block until ``stage`` starts; False if the process ended (or timed out) first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(s == stage and kind == "running" for _, s, kind in self.events):
                    return True
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return False
                self._cond.wait(0.01)

    def running_stage(self) -> str | None:
        """The stage whose ``running`` line came last (None before the first)."""
        with self._cond:
            starts = [s for _, s, kind in self.events if kind == "running"]
        return starts[-1] if starts else None

    def kill(self) -> None:
        """SIGKILL the whole process group (the CLI and any worker it spawned)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(60)

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.05)
        return rc


def _strip_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_strip_timing(v) for v in value]
    return value


def array_digest(arr: np.ndarray) -> str:
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def fingerprint(session: Path) -> dict[str, str]:
    """``relative path[:array]`` -> digest of every array and YAML document under ``session``.

    Hidden files and folders (the engine's ``.posecap``, temporary files) are left out.
    """
    out: dict[str, str] = {}
    for path in sorted(session.rglob("*")):
        rel = path.relative_to(session)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                for key in npz.files:
                    if key not in TIMING_ARRAYS or "detections" not in rel.parts:
                        out[f"{rel}:{key}"] = array_digest(npz[key])
        elif path.suffix == ".npy":
            out[str(rel)] = array_digest(np.load(path, allow_pickle=False))
        elif path.suffix in (".yaml", ".yml"):
            doc = _strip_timing(yaml.safe_load(path.read_text()))
            out[str(rel)] = hashlib.sha256(repr(doc).encode()).hexdigest()[:16]
    return out


def diff_fingerprints(want: dict[str, str], got: dict[str, str]) -> list[str]:
    """Human-readable differences between two fingerprints (empty when equal)."""
    lines = [f"missing {k}" for k in sorted(want.keys() - got.keys())]
    lines += [f"extra {k}" for k in sorted(got.keys() - want.keys())]
    lines += [f"differs {k}" for k in sorted(want.keys() & got.keys()) if want[k] != got[k]]
    return lines


def load_entry(session: Path, entry: str) -> Any:
    """The value a fingerprint entry (``path`` or ``path:array``) digests."""
    rel, _, key = entry.partition(":")
    path = session / rel
    if key:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    return _strip_timing(yaml.safe_load(path.read_text()))


def temp_leftovers(session: Path) -> list[str]:
    """Temporary files of the atomic writer (``.<name>.tmp-*``) still lying in ``session``."""
    return sorted(str(p.relative_to(session)) for p in session.rglob(".*.tmp-*"))
