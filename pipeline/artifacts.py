"""Artifact I/O: schema-checked YAML and numpy arrays, always written atomically.

Every YAML artifact starts with ``schema: posecap/<name>@<version>``. Readers check the name and
refuse versions newer than they understand. YAML is read with ``yaml.safe_load`` only and written
as plain lists, numbers and strings (numpy values are converted first).

Every write goes to a temporary file in the destination folder and is moved into place with
``os.replace``, so a killed process never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.errors import ArtifactError

SCHEMA_PREFIX = "posecap/"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. An
    ``OSError`` that means the folder cannot take the file (disk full, file too large, read-only,
    no permission) becomes a one-line ArtifactError naming ``path``; other errors propagate. The
    temporary name carries the writer's process id (``.<name>.tmp-<pid>-<random>``), so one left
    by a killed process can be recognised and removed (:func:`remove_stale_temporaries`).
    ``suffix`` defaults to the destination's suffix (so writers that pick a format by extension,
    such as ``cv2.VideoWriter``, see the right one).
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}{TEMP_MARK}{os.getpid()}-",
                                        suffix=dest.suffix if suffix is None else suffix, dir=dest.parent)
    except OSError as exc:
        raise ArtifactError(f"{dest}: cannot write ({os_reason(exc)}); {dest.parent} must be a writable "
                            "folder") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise ArtifactError(f"{dest}: writer produced no file")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            kept = "the previous file is kept" if dest.exists() else "nothing was written"
            raise ArtifactError(f"{dest}: cannot write ({os_reason(exc)}); {kept}; free disk space or fix "
                                "the folder's permissions, then rerun") from None
        raise


# errors that mean "this folder cannot take the file": reported as an ArtifactError naming it
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})
TEMP_MARK = ".tmp-"  # atomic_path's temporary files: .<name>.tmp-<pid>-<random><suffix>
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-")


def os_reason(exc: OSError) -> str:
    """``strerror`` of an OSError (``No space left on device``), or its text."""
    return exc.strerror or str(exc) or type(exc).__name__


def remove_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary files under ``root`` that :func:`atomic_path` left in a killed process.

    A temporary file is stale when the process whose id is in its name no longer exists (or is
    this process, which holds no write open when this is called). Call it only while no other
    writer of this process works under ``root``; the runner calls it holding the session's run
    lock. Returns the removed paths.
    """
    removed = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            m = _TEMP_NAME.match(name)
            if m is None or (int(m["pid"]) != os.getpid() and _pid_alive(int(m["pid"]))):
                continue
            path = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def to_plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and Paths into plain YAML-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN stays a float; YAML writes .nan
        return value
    return value


def _schema_tag(name: str, version: int) -> str:
    return f"{SCHEMA_PREFIX}{name}@{version}"


def parse_schema(text: str) -> tuple[str, int]:
    """Split ``"rig@1"`` or ``"posecap/rig@1"`` into ``("rig", 1)``."""
    body = text[len(SCHEMA_PREFIX):] if text.startswith(SCHEMA_PREFIX) else text
    name, sep, version = body.partition("@")
    if not sep or not version.isdigit() or not name:
        raise ValueError(f"bad schema string {text!r}; expected 'posecap/<name>@<version>'")
    return name, int(version)


def dump_yaml_text(data: Mapping[str, Any]) -> str:
    """Render a mapping as block-style YAML with plain types, keys in insertion order."""
    return yaml.safe_dump(to_plain(dict(data)), sort_keys=False, default_flow_style=None, width=100)


def write_yaml(path: str | os.PathLike, data: Mapping[str, Any], schema: str) -> None:
    """Write ``data`` as a YAML artifact whose first field is ``schema: posecap/<schema>``.

    ``schema`` is ``"<name>@<version>"``, e.g. ``"rig@1"``.
    """
    name, version = parse_schema(schema)
    body = {"schema": _schema_tag(name, version)}
    body.update({k: v for k, v in data.items() if k != "schema"})
    write_bytes(path, dump_yaml_text(body).encode("utf-8"))


def load_yaml_file(path: str | os.PathLike) -> Any:
    """``yaml.safe_load`` a file, turning I/O and syntax errors into one-line ArtifactErrors."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{p}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ArtifactError(f"{p}: invalid YAML{line}; fix the syntax or regenerate it") from None


def read_yaml(path: str | os.PathLike, schema: str) -> dict[str, Any]:
    """Read a YAML artifact and check its ``schema`` field.

    ``schema`` is ``"<name>@<max_version>"``: the file must carry the same name and a version
    between 1 and ``max_version``. Returns the mapping (including ``schema``).
    """
    name, max_version = parse_schema(schema)
    p = Path(path)
    data = load_yaml_file(p)
    if not isinstance(data, dict):
        raise ArtifactError(f"{p}: expected a YAML mapping at the top level, got {type(data).__name__}")
    found = data.get("schema")
    if not isinstance(found, str):
        raise ArtifactError(
            f"{p}: field 'schema' missing or not a string; expected '{_schema_tag(name, max_version)}'"
        )
    try:
        found_name, found_version = parse_schema(found)
    except ValueError:
        raise ArtifactError(
            f"{p}: field 'schema' is {found!r}; expected '{_schema_tag(name, max_version)}'"
        ) from None
    if found_name != name:
        raise ArtifactError(
            f"{p}: field 'schema' is {found!r}; expected a '{name}' artifact "
            f"('{_schema_tag(name, max_version)}')"
        )
    if found_version > max_version:
        raise ArtifactError(
            f"{p}: field 'schema' is {found!r}, newer than this posecap understands "
            f"(up to @{max_version}); upgrade posecap"
        )
    return data


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz`` atomically.

    The bytes depend on the arrays only (every zip entry carries the same fixed timestamp, where
    ``np.savez`` stamps the current time), so equal results give byte-identical files wherever
    and whenever they are written.
    """
    buf = io.BytesIO()
    with _npz_zip(buf) as zf:
        for key, value in arrays.items():
            with _npz_member(zf, key) as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)
    write_bytes(path, buf.getvalue())


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _npz_zip(file: Any) -> zipfile.ZipFile:
    """The zip archive of an ``.npz`` being written: uncompressed, zip64 allowed."""
    return zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True)


def _npz_member(zf: zipfile.ZipFile, key: str) -> Any:
    """Open ``<key>.npy`` for writing, with the fixed timestamp and a zip64 header (file-like)."""
    return zf.open(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH), "w", force_zip64=True)


def npy_header(shape: tuple[int, ...], dtype: np.dtype | str) -> bytes:
    """The ``.npy`` header ``np.lib.format.write_array`` writes for a C-order array of ``shape`` and ``dtype``.

    Format version 1.0, or 2.0 when the header does not fit 1.0 (as ``write_array`` picks).
    """
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise ValueError(f"npy_header: dtype {dt} holds Python objects; they cannot be written without pickle")
    header = {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False, "shape": tuple(int(n) for n in shape)}
    buf = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # header over 64 KiB (a structured dtype of many fields)
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


# an array written block by block: (shape of the whole array, dtype, its blocks in order along axis 0)
StreamedArray = tuple[tuple[int, ...], np.dtype | str, Iterable[np.ndarray]]


def write_npz_streamed(path: str | os.PathLike, arrays: Mapping[str, StreamedArray]) -> None:
    """Write arrays given as blocks along axis 0 to an uncompressed ``.npz`` atomically, one block in memory at a time.

    ``arrays`` maps a name to ``(shape, dtype, blocks)``: the whole array's shape and dtype, and
    an iterable of arrays of that dtype whose shapes are ``(n_i, *shape[1:])`` with
    ``sum(n_i) == shape[0]``, read lazily in order. The file is byte for byte what
    :func:`write_npz` writes for the concatenated arrays (same members in the same order, fixed
    timestamps, zip64 headers, ``.npy`` header of :func:`npy_header`), but it is written straight
    into the temporary file of :func:`atomic_path`, so memory holds one block, not the array.
    A disk-full or read-only failure is the same one-line ArtifactError as :func:`write_npz`'s;
    blocks that do not match the declared shape or dtype raise ValueError; either way nothing is
    left under ``path`` or in a temporary file.
    """
    with atomic_path(path) as tmp, _npz_zip(tmp) as zf:
        for key, (shape, dtype, blocks) in arrays.items():
            with _npz_member(zf, key) as fh:
                _write_npy_blocks(fh, key, tuple(shape), np.dtype(dtype), blocks)


def _write_npy_blocks(fh: Any, key: str, shape: tuple[int, ...], dtype: np.dtype, blocks: Iterable[np.ndarray]) -> None:
    """Write the ``.npy`` header of ``(shape, dtype)`` then each block's C-order bytes, checking they add up."""
    if not shape:
        raise ValueError(f"write_npz_streamed: array '{key}' must have at least one dimension")
    fh.write(npy_header(shape, dtype))
    rows = 0
    for block in blocks:
        b = np.asarray(block)
        if b.dtype != dtype or b.ndim != len(shape) or b.shape[1:] != shape[1:] or rows + len(b) > shape[0]:
            raise ValueError(f"write_npz_streamed: array '{key}': block {b.dtype} {b.shape} after {rows} rows "
                             f"does not fit {dtype} {shape}")
        fh.write(np.ascontiguousarray(b).tobytes())
        rows += len(b)
    if rows != shape[0]:
        raise ValueError(f"write_npz_streamed: array '{key}': blocks hold {rows} rows; declared {shape[0]}")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array to ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class ArraySpec:
    """What an array in an artifact must look like.

    ``shape`` holds one entry per dimension: an int for a fixed size, ``None`` for any size,
    or a string naming a size that must agree across arrays of the same file (e.g. ``"T"``).
    ``kind`` is a numpy dtype kind string: ``"f"`` float, ``"iu"`` integer, ``"b"`` bool.
    """

    shape: tuple[int | str | None, ...]
    kind: str = "f"
    finite_or_nan: bool = True  # floats may hold NaN (missing) but never +-inf


def read_npz(path: str | os.PathLike, specs: Mapping[str, ArraySpec] | None = None,
             optional: Mapping[str, ArraySpec] | None = None) -> dict[str, np.ndarray]:
    """Load an ``.npz`` (no pickles) and check each named array against its spec.

    Returns a dict of all arrays in the file. Raises ArtifactError naming the file, the array,
    and what was expected.
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: file not found")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - any decode failure is a corrupt artifact
        raise ArtifactError(f"{p}: not a readable .npz file ({exc.__class__.__name__}); regenerate it") from None
    sizes: dict[str, int] = {}
    all_specs = dict(specs or {})
    for key in all_specs:
        if key not in arrays:
            raise ArtifactError(f"{p}: array '{key}' missing; found {sorted(arrays)}")
    for key, spec in (optional or {}).items():
        if key in arrays:
            all_specs[key] = spec
    for key, spec in all_specs.items():
        check_array(arrays[key], spec, f"{p}: array '{key}'", sizes)
    return arrays


def check_array(arr: np.ndarray, spec: ArraySpec, where: str, sizes: dict[str, int] | None = None) -> None:
    """Check ``arr`` against ``spec``; named sizes are recorded in / checked against ``sizes``."""
    sizes = {} if sizes is None else sizes
    want = "(" + ", ".join("*" if s is None else str(s) for s in spec.shape) + ")"
    if arr.ndim != len(spec.shape):
        raise ArtifactError(f"{where} has shape {arr.shape}; expected {want}")
    for dim, (got, exp) in enumerate(zip(arr.shape, spec.shape)):
        if isinstance(exp, int) and got != exp:
            raise ArtifactError(f"{where} has shape {arr.shape}; expected {want} (dim {dim})")
        if isinstance(exp, str):
            if exp in sizes and sizes[exp] != got:
                raise ArtifactError(
                    f"{where} has shape {arr.shape}; size {exp} should be {sizes[exp]} as in the other arrays"
                )
            sizes.setdefault(exp, got)
    if arr.dtype.kind not in spec.kind:
        raise ArtifactError(f"{where} has dtype {arr.dtype}; expected kind '{spec.kind}'")
    if spec.finite_or_nan and arr.dtype.kind == "f" and np.isinf(arr).any():
        raise ArtifactError(f"{where} contains +-inf; use NaN for missing values")
