"""Content hashes of artifact files and folders, with an (mtime, size) fast path.

A folder's digest covers every file below it (by relative path and content), skipping hidden
names, which is where atomic writers keep their temporary files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class FileStamp:
    """What the fast path compares before hashing: size in bytes and mtime in ns."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass
class HashCache:
    """Remembers ``path -> FileStamp`` so unchanged files are not re-read.

    Seeded from the lock file; a file whose size and mtime match its stamp keeps its digest.
    """

    stamps: dict[str, FileStamp] = field(default_factory=dict)
    hashed_bytes: int = 0

    def file_digest(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        stamp = self.stamps.get(key)
        if stamp is not None and stamp.size == st.st_size and stamp.mtime_ns == st.st_mtime_ns:
            return stamp.sha256
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        self.hashed_bytes += st.st_size
        digest = h.hexdigest()
        self.stamps[key] = FileStamp(st.st_size, st.st_mtime_ns, digest)
        return digest

    def digest(self, path: Path) -> str | None:
        """Digest of a file or folder; None if it does not exist."""
        if path.is_file():
            return self.file_digest(path)
        if path.is_dir():
            h = hashlib.sha256(b"dir\n")
            for rel in sorted(_visible_files(path)):
                h.update(f"{rel}\0{self.file_digest(path / rel)}\n".encode())
            return h.hexdigest()
        return None


def _visible_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath)
        out.extend(str((base / f).relative_to(root)) for f in filenames if not f.startswith("."))
    return out
