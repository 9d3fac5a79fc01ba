"""Import and export of the rig formats of other tools: aniposelib, Pose2Sim, EasyMocap.

Every format stores, per camera, the OpenCV intrinsics (K, distortion) and the world -> camera
pose as a Rodrigues rotation vector and a translation, the same convention as
``calib/rig.yaml``; only the layout and the length unit differ:

- ``anipose``: aniposelib / anipose ``calibration.toml``. Sections ``[cam_0]``, ``[cam_1]``, …
  with ``name``, ``size = [w, h]``, ``matrix`` (3×3), ``distortions``, ``rotation`` (rvec),
  ``translation``, plus ``[metadata]``. The translation is in the unit of the board's square
  length, which anipose users usually give in millimetres: ``units`` defaults to ``mm``.
- ``pose2sim``: Pose2Sim ``Calib*.toml``. Sections named after the cameras, with the same keys
  plus ``fisheye = false``; translation in metres; ``distortions`` holds ``[k1, k2, p1, p2]``
  (five values when k3 is not zero).
- ``easymocap``: EasyMocap ``intri.yml`` / ``extri.yml`` (OpenCV FileStorage YAML) in one folder.
  ``intri.yml``: ``names``, ``K_<cam>``, ``dist_<cam>`` (1×5), ``H_<cam>``, ``W_<cam>``;
  ``extri.yml``: ``names``, ``R_<cam>`` (rvec 3×1), ``Rot_<cam>`` (3×3), ``T_<cam>`` (3×1, metres).
- ``posecap``: ``calib/rig.yaml`` itself.

Fisheye cameras (aniposelib / Pose2Sim ``fisheye = true``) are not representable in rig.yaml's
pinhole model and are refused with a message.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.artifacts import atomic_path, write_bytes
from pipeline.errors import ArtifactError, PosecapError
from pipeline.geometry.camera import Camera
from pipeline.geometry.rig import Rig

FORMATS: tuple[str, ...] = ("posecap", "anipose", "pose2sim", "easymocap")
DEFAULT_UNITS = {"posecap": "m", "anipose": "mm", "pose2sim": "m", "easymocap": "m"}
UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001}
log = logging.getLogger("posecap")


def _check(fmt: str, units: str | None) -> tuple[str, float]:
    if fmt not in FORMATS:
        raise PosecapError(f"unknown rig format {fmt!r}; choose one of {', '.join(FORMATS)}")
    units = units or DEFAULT_UNITS[fmt]
    if units not in UNIT_SCALE:
        raise PosecapError(f"unknown length unit {units!r}; choose one of {', '.join(UNIT_SCALE)}")
    if fmt in ("posecap",) and units != "m":
        raise PosecapError("rig.yaml is always in metres; drop the units option for the posecap format")
    return units, UNIT_SCALE[units]


# ---- TOML --------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_value(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
        return text if any(ch in text for ch in ".en") else text + ".0"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[ " + ", ".join(_toml_value(v) for v in value) + ",]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, plus DEL, which TOML also forbids raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def dump_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of ``{section: {key: value}}`` (values: numbers, strings, bools, nested lists)."""
    lines = []
    for name, body in sections.items():
        lines.append(f"[{_toml_key(name)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file (tomllib on Python >= 3.11, else the ``tomli`` package)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise PosecapError("reading TOML needs Python >= 3.11 or the 'tomli' package (pip install tomli)") from None
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid TOML ({exc})") from None


# ---- field checks ----------------------------------------------------------------------------------

def _array(path: Path, where: str, value: Any, shape: tuple[int, ...] | None = None,
           lengths: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArtifactError(f"{path}: {where} is not a list of numbers: {value!r}") from None
    if shape is not None and arr.size == int(np.prod(shape)):
        arr = arr.reshape(shape)
    if shape is not None and arr.shape != shape:
        raise ArtifactError(f"{path}: {where} has shape {list(arr.shape)}; expected {list(shape)}")
    if lengths is not None:
        arr = arr.ravel()
        if arr.size not in lengths:
            raise ArtifactError(f"{path}: {where} holds {arr.size} values; expected {' or '.join(map(str, lengths))}")
    if not np.all(np.isfinite(arr)):
        raise ArtifactError(f"{path}: {where} contains NaN or inf")
    return arr


def _camera(path: Path, name: str, size: Any, K: Any, dist: Any, rvec: Any, tvec: Any, scale: float) -> Camera:
    where = f"camera '{name}'"
    size_a = _array(path, f"{where} size", size, (2,))
    if np.any(size_a <= 0):
        raise ArtifactError(f"{path}: {where} size must be two positive numbers [width, height]")
    K_a = _array(path, f"{where} matrix", K, (3, 3))
    d = _array(path, f"{where} distortions", dist, lengths=(0, 1, 2, 3, 4, 5, 8, 12, 14))
    d = np.pad(d, (0, max(0, 4 - d.size)))
    if d.size in (12, 14):
        if np.any(d[8:] != 0):
            raise ArtifactError(f"{path}: {where} uses thin-prism or tilt distortion terms, which rig.yaml cannot hold")
        d = d[:8]
    R = cv2.Rodrigues(_array(path, f"{where} rotation", rvec, (3,)))[0]
    t = _array(path, f"{where} translation", tvec, (3,)) * scale
    return Camera(name, (int(round(size_a[0])), int(round(size_a[1]))), K_a, d, R, t)


def _sections(path: Path, data: dict[str, Any]) -> list[tuple[str, dict]]:
    out = [(k, v) for k, v in data.items() if k != "metadata" and isinstance(v, dict)]
    if not out:
        raise ArtifactError(f"{path}: no camera sections found")

    def order(item: tuple[str, dict]) -> tuple:
        m = re.match(r"^(.*?)(\d+)$", item[0])
        return (m.group(1), int(m.group(2))) if m else (item[0], -1)

    return sorted(out, key=order)


def _toml_rig(path: Path, fmt: str, scale: float) -> Rig:
    data = load_toml(path)
    cams = []
    for key, sec in _sections(path, data):
        missing = [k for k in ("size", "matrix", "distortions", "rotation", "translation") if k not in sec]
        if missing:
            raise ArtifactError(f"{path}: section [{key}] lacks {', '.join(missing)}")
        if sec.get("fisheye", False):
            raise PosecapError(f"{path}: camera [{key}] is a fisheye camera; rig.yaml holds pinhole cameras only")
        name = str(sec.get("name", key))
        cams.append(_camera(path, name, sec["size"], sec["matrix"], sec["distortions"], sec["rotation"],
                            sec["translation"], scale))
    try:
        return Rig(tuple(cams), world=fmt)
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def _toml_sections(rig: Rig, fmt: str, scale: float, error: float | None) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for i, cam in enumerate(rig.cameras):
        dist = cam.dist.tolist()
        if fmt == "pose2sim":
            dist = dist[:4] if not any(dist[4:]) else dist
        body = {
            "name": cam.name,
            "size": [float(cam.image_size[0]), float(cam.image_size[1])] if fmt == "pose2sim" else list(cam.image_size),
            "matrix": cam.K.tolist(),
            "distortions": dist,
            "rotation": cv2.Rodrigues(cam.R)[0].ravel().tolist(),
            "translation": (cam.t / scale).tolist(),
        }
        if fmt == "pose2sim":
            body["fisheye"] = False
        sections[f"cam_{i}" if fmt == "anipose" else cam.name] = body
    sections["metadata"] = {"adjusted": False, "error": float(error) if error is not None else 0.0}
    return sections


# ---- EasyMocap ---------------------------------------------------------------------------------------

def _easymocap_paths(path: Path) -> tuple[Path, Path]:
    folder = path.parent if path.suffix in (".yml", ".yaml") else path
    return folder / "intri.yml", folder / "extri.yml"


def _fs_names(fs: cv2.FileStorage) -> list[str]:
    node = fs.getNode("names")
    if node.empty():
        return []
    if node.isSeq():
        return [node.at(i).string() or str(int(node.at(i).real())) for i in range(node.size())]
    return [node.string()]


def _fs_mat(fs: cv2.FileStorage, key: str) -> np.ndarray | None:
    node = fs.getNode(key)
    if node.empty():
        return None
    mat = node.mat()
    if mat is None and node.isSeq():
        mat = np.array([node.at(i).real() for i in range(node.size())])
    return None if mat is None else np.asarray(mat, np.float64)


def _easymocap_rig(path: Path, scale: float, image_sizes: Mapping[str, tuple[int, int]] | None) -> Rig:
    intri_p, extri_p = _easymocap_paths(path)
    for p in (intri_p, extri_p):
        if not p.is_file():
            raise ArtifactError(f"{p}: file not found; an EasyMocap camera folder holds intri.yml and extri.yml")
    intri = cv2.FileStorage(str(intri_p), cv2.FILE_STORAGE_READ)
    extri = cv2.FileStorage(str(extri_p), cv2.FILE_STORAGE_READ)
    try:
        names = _fs_names(intri) or _fs_names(extri)
        if not names:
            raise ArtifactError(f"{intri_p}: field 'names' missing or empty")
        cams = []
        for name in names:
            K = _fs_mat(intri, f"K_{name}")
            dist = _fs_mat(intri, f"dist_{name}")
            dist = _fs_mat(intri, f"D_{name}") if dist is None else dist
            rvec = _fs_mat(extri, f"R_{name}")
            rot = _fs_mat(extri, f"Rot_{name}")
            tvec = _fs_mat(extri, f"T_{name}")
            if K is None:
                raise ArtifactError(f"{intri_p}: field 'K_{name}' missing")
            if tvec is None or (rvec is None and rot is None):
                raise ArtifactError(f"{extri_p}: fields 'R_{name}' / 'T_{name}' missing")
            if rvec is None or rvec.size != 3:
                rvec = cv2.Rodrigues(_array(extri_p, f"Rot_{name}", rot, (3, 3)))[0]
            h, w = intri.getNode(f"H_{name}"), intri.getNode(f"W_{name}")
            if image_sizes and name in image_sizes:
                size = image_sizes[name]
            elif not h.empty() and not w.empty() and w.real() > 0 and h.real() > 0:
                size = (int(w.real()), int(h.real()))
            else:
                size = (int(round(2 * K[0, 2] + 1)), int(round(2 * K[1, 2] + 1)))
                log.warning("%s: no H_%s / W_%s; assuming the image is %dx%d px (twice the principal point)",
                            intri_p, name, name, *size)
            cams.append(_camera(intri_p, name, size, K, np.zeros(5) if dist is None else dist, rvec, tvec, scale))
    finally:
        intri.release()
        extri.release()
    return Rig(tuple(cams), world="easymocap")


def _write_filestorage(dest: Path, entries: list[tuple[str, Any]], names: list[str]) -> None:
    with atomic_path(dest) as tmp:
        fs = cv2.FileStorage(str(tmp), cv2.FILE_STORAGE_WRITE)
        try:
            fs.startWriteStruct("names", cv2.FileNode_SEQ)
            for n in names:
                fs.write("", n)
            fs.endWriteStruct()
            for key, value in entries:
                fs.write(key, value)
        except cv2.error as exc:
            raise PosecapError(f"{dest}: OpenCV cannot write key {key!r} ({exc.err}); camera names for EasyMocap "
                               "must be letters, digits and '_'") from None
        finally:
            fs.release()
        text = tmp.read_text(encoding="utf-8")
        if text.startswith("%YAML") and not text.startswith("%YAML:1.0"):
            # EasyMocap writes (and OpenCV 3.x only reads) the "%YAML:1.0" header
            tmp.write_text("%YAML:1.0" + text[text.index("\n"):], encoding="utf-8")


def _write_easymocap(rig: Rig, path: Path, scale: float) -> list[Path]:
    intri_p, extri_p = _easymocap_paths(path)
    intri, extri = [], []
    for cam in rig.cameras:
        dist5 = np.pad(cam.dist, (0, max(0, 5 - cam.dist.size)))[None]
        intri += [(f"K_{cam.name}", cam.K), (f"dist_{cam.name}", dist5),
                  (f"H_{cam.name}", int(cam.image_size[1])), (f"W_{cam.name}", int(cam.image_size[0]))]
        extri += [(f"R_{cam.name}", cv2.Rodrigues(cam.R)[0]), (f"Rot_{cam.name}", cam.R),
                  (f"T_{cam.name}", (cam.t / scale).reshape(3, 1))]
    _write_filestorage(intri_p, intri, rig.names)
    _write_filestorage(extri_p, extri, rig.names)
    return [intri_p, extri_p]


# ---- public API -------------------------------------------------------------------------------------

def import_rig(path: str | os.PathLike, fmt: str, units: str | None = None,
               image_sizes: Mapping[str, tuple[int, int]] | None = None) -> Rig:
    """Read a rig in format ``fmt`` (see the module docstring) into a :class:`Rig` in metres.

    Args:
        path: the file (``calibration.toml``, ``Calib.toml``, ``rig.yaml``) or, for EasyMocap, the
            folder holding ``intri.yml`` and ``extri.yml`` (or either file).
        fmt: one of :data:`FORMATS`.
        units: length unit of the file's translations (default per format: anipose mm, others m).
        image_sizes: EasyMocap only: camera -> (width, height) when the file has no H_/W_ fields.
    """
    _, scale = _check(fmt, units)
    p = Path(path)
    if fmt == "posecap":
        return Rig.load(p)
    if fmt == "easymocap":
        return _easymocap_rig(p, scale, image_sizes)
    return _toml_rig(p, fmt, scale)


def export_rig(rig: Rig, path: str | os.PathLike, fmt: str, units: str | None = None,
               error_px: float | None = None, extra: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Write ``rig`` in format ``fmt``; returns the files written (atomically).

    Args:
        rig: the cameras (metres).
        path: destination file, or folder for EasyMocap.
        fmt: one of :data:`FORMATS`.
        units: length unit of the written translations (default per format).
        error_px: reprojection error for the TOML formats' ``[metadata] error``.
        extra: posecap only: per-camera extra fields (e.g. reprojection_rms_px).
    """
    _, scale = _check(fmt, units)
    p = Path(path)
    if fmt == "posecap":
        rig.save(p, dict(extra or {}))
        return [p]
    if fmt == "easymocap":
        return _write_easymocap(rig, p, scale)
    write_bytes(p, dump_toml(_toml_sections(rig, fmt, scale, error_px)).encode("utf-8"))
    return [p]
