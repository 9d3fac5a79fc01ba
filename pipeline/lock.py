"""The engine's lock file: per stage, what its last successful run saw and wrote.

``<session>/.posecap/lock.yaml`` (schema ``posecap/lock@1``)::

    stages:
      crop:
        version: "1"
        params: {...}                    # the stage's config section as plain YAML
        inputs: {raw/quad.avi: <sha256>}
        outputs: {session.yaml: <sha256>, streams: <sha256>}
        finished_at: 2026-11-29T05:00:00Z
        duration_s: 1.2
    files:                               # fast-path stamps: path -> [size, mtime_ns, sha256]
      /abs/path: [123, 1700000000000000000, <sha256>]

It is written only after a stage succeeds. A corrupt lock is treated as empty, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import read_yaml, write_yaml
from pipeline.errors import ArtifactError
from pipeline.hashing import FileStamp, HashCache

LOCK_SCHEMA = "lock@1"
log = logging.getLogger("posecap")


@dataclass
class StageRecord:
    """What one successful run of a stage saw and produced."""

    version: str
    params: dict[str, Any]
    inputs: dict[str, str | None]
    outputs: dict[str, str | None]
    finished_at: str = ""
    duration_s: float = 0.0


@dataclass
class Lock:
    path: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)
    cache: HashCache = field(default_factory=HashCache)

    @classmethod
    def load(cls, session_dir: Path) -> Lock:
        path = session_dir / ".posecap" / "lock.yaml"
        lock = cls(path=path)
        if not path.exists():
            return lock
        try:
            data = read_yaml(path, LOCK_SCHEMA)
            for name, rec in (data.get("stages") or {}).items():
                lock.stages[str(name)] = StageRecord(
                    version=str(rec["version"]),
                    params=dict(rec.get("params") or {}),
                    inputs=dict(rec.get("inputs") or {}),
                    outputs=dict(rec.get("outputs") or {}),
                    finished_at=str(rec.get("finished_at", "")),
                    duration_s=float(rec.get("duration_s", 0.0)),
                )
            for key, (size, mtime, sha) in (data.get("files") or {}).items():
                lock.cache.stamps[str(key)] = FileStamp(int(size), int(mtime), str(sha))
        except (ArtifactError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("%s: lock file unreadable (%s); treating every stage as never run", path, exc)
            return cls(path=path)
        return lock

    def save(self) -> None:
        data = {
            "stages": {
                name: {
                    "version": rec.version,
                    "params": rec.params,
                    "inputs": rec.inputs,
                    "outputs": rec.outputs,
                    "finished_at": rec.finished_at,
                    "duration_s": round(rec.duration_s, 3),
                }
                for name, rec in sorted(self.stages.items())
            },
            "files": {k: [s.size, s.mtime_ns, s.sha256] for k, s in sorted(self.cache.stamps.items())},
        }
        write_yaml(self.path, data, LOCK_SCHEMA)
