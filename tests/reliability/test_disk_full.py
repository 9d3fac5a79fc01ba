"""Disk full and read-only folders: a failed write keeps the previous artifact and says where.

Disk full is simulated twice: ENOSPC injected into the atomic writer, and a real subprocess whose
file-size limit (``RLIMIT_FSIZE``) is too small for the artifact (the kernel then fails the write
with EFBIG). A read-only folder is simulated by injecting EROFS, and made for real with chmod when
the tests do not run as root (root writes through a 0o555 folder).
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline import artifacts
from pipeline.artifacts import write_yaml
from pipeline.cli import main
from pipeline.errors import ArtifactError
from tests.reliability.conftest import digests
from tests.reliability.harness import cli_env, one_line_error, temp_leftovers


def _triangulate(root: Path) -> list[str]:
    return ["-q", "triangulate", str(root / "session"), "--config", str(root / "posecap.yaml"), "--force"]


def test_enospc_keeps_the_previous_artifact(handmade, capsys, monkeypatch):
    session = handmade / "session"
    before = digests(session)
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if ".tmp-" in self.name:
            real(self, data[: len(data) // 2])  # part of it reached the disk, then the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    capsys.readouterr()
    assert main(_triangulate(handmade)) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("posecap: error:")]
    assert len(line) == 1 and "No space left on device" in line[0] and "Traceback" not in err, err
    assert str(session / "pose3d") in line[0] and "previous file is kept" in line[0], line[0]
    assert digests(session) == before
    assert not temp_leftovers(session)


def test_file_size_limit_in_a_real_process(handmade):
    """A subprocess that may not write files over 4 KiB: pose3d/skeletons.npz cannot be written."""
    session = handmade / "session"
    before = digests(session)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *_triangulate(handmade)], capture_output=True,
                          text=True, timeout=600, env=cli_env(), preexec_fn=limit)
    line = one_line_error(proc)
    assert "File too large" in line and str(session / "pose3d") in line, line
    assert digests(session) == before
    assert not temp_leftovers(session)


def test_read_only_folder_injected(handmade, capsys, monkeypatch):
    session = handmade / "session"
    before = digests(session)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    capsys.readouterr()
    assert main(_triangulate(handmade)) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and str(session / "pose3d") in err and "Traceback" not in err, err
    assert digests(session) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder; the injected EROFS case covers it")
def test_read_only_folder_for_real(handmade, capsys):
    session = handmade / "session"
    before = digests(session)
    folder = session / "pose3d"
    folder.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(_triangulate(handmade)) == 2
        err = capsys.readouterr().err
        assert "Permission denied" in err and str(folder) in err and "Traceback" not in err, err
    finally:
        folder.chmod(0o755)
    assert digests(session) == before


def test_atomic_writer_reports_and_cleans_up(tmp_path, monkeypatch):
    """The library call: an ArtifactError naming the file; the old content stays; no temporary file."""
    path = tmp_path / "a.yaml"
    write_yaml(path, {"x": 1}, "thing@1")
    old = path.read_bytes()
    monkeypatch.setattr(artifacts.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(ArtifactError, match=r"a\.yaml: cannot write \(full\); the previous file is kept"):
        write_yaml(path, {"x": 2}, "thing@1")
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / "sub" / f".x.npz.tmp-{dead}-abc.npz"
    live = tmp_path / f".y.npz.tmp-{os.getppid()}-abc.npz"
    other = tmp_path / ".hidden-but-not-ours"
    for p in (stale, live, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert artifacts.remove_stale_temporaries(tmp_path) == [stale]
    assert live.exists() and other.exists() and not stale.exists()
