"""Hypothesis-generated documents and arrays: the YAML, config, rig and npz readers either accept
them or raise a one-line PosecapError; never another exception."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.artifacts import read_yaml
from pipeline.config import load_config
from pipeline.errors import PosecapError
from pipeline.geometry.rig import Rig
from pipeline.pose2d.io import read_pose2d_arrays

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["posecap/rig@1", "posecap/rig@7", "rig@1", "m"]))
docs = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["schema", "units", "cameras", "cam0", "K", "dist", "R", "t", "image_size",
                                     "session_dir", "triangulate", "min_views", "crop", "x"]), inner, max_size=5)),
    max_leaves=20)


def _write(tmp: Path, doc) -> Path:
    path = tmp / "doc.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


@SETTINGS
@given(doc=docs)
def test_read_yaml_and_rig(tmp_path, doc):
    path = _write(tmp_path, doc)
    for read in (lambda: read_yaml(path, "rig@1"), lambda: Rig.load(path)):
        try:
            read()
        except PosecapError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)


@SETTINGS
@given(text=st.text(max_size=60))
def test_read_yaml_of_any_text(tmp_path, text):
    path = _write(tmp_path, text)
    try:
        read_yaml(path, "rig@1")
    except PosecapError as exc:
        assert "\n" not in str(exc)


@SETTINGS
@given(doc=docs)
def test_load_config(tmp_path, doc):
    from stages import config_sections

    path = _write(tmp_path, doc)
    try:
        load_config(path, config_sections())
    except PosecapError as exc:
        assert "\n" not in str(exc)


arrays = hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int32, np.bool_, np.dtype("U2")]),
                    shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=4),
                    elements=None)


@SETTINGS
@given(kp=arrays, frames=arrays, extra=st.booleans())
def test_read_pose2d(tmp_path, kp, frames, extra):
    path = tmp_path / "cam0.npz"
    buf = io.BytesIO()
    np.savez(buf, keypoints=kp, **({"frame_index": frames} if extra or frames.ndim else {}))
    path.write_bytes(buf.getvalue())
    try:
        out = read_pose2d_arrays(path, 17)
    except PosecapError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    k = out["keypoints"]
    assert k.shape[-2:] == (17, 3) and len(k) >= 1 and not np.isinf(k).any()
    assert np.all((k[..., 2] >= 0) & (k[..., 2] <= 1))
