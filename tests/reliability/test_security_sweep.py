"""Security: malicious checkpoints are refused without running their payload; the source keeps
to safe loaders (an AST check beside the line rules of ``tests/engine/test_security.py``)."""

from __future__ import annotations

import ast
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import PosecapError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("pipeline", "stages", "benchmarks") for p in (ROOT / d).rglob("*.py"))


class Payload:
    """Unpickling this calls ``os.system`` (what a hostile checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile(path: Path, marker: Path) -> Path:
    torch.save({"model": Payload(marker), "config": {}}, path)
    return path


def test_malicious_checkpoint_is_refused_by_load_weights(tmp_path):
    from pipeline.weights import load_weights

    marker = tmp_path / "pwned"
    path = _hostile(tmp_path / "evil.pt", marker)
    with pytest.raises(PosecapError, match="evil.pt: not a loadable checkpoint"):
        load_weights(path)
    assert not marker.exists(), "the pickle payload ran"


def test_plain_pickle_is_refused(tmp_path):
    from pipeline.weights import load_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(PosecapError, match="not a loadable checkpoint"):
        load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", ["not a dict", "bad state"])
def test_checkpoint_with_the_wrong_content_is_refused(tmp_path, content):
    from pipeline.weights import load_weights

    path = tmp_path / "odd.pt"
    if content == "not a dict":
        torch.save([torch.zeros(3)], path)
    else:
        from dataclasses import asdict

        from pipeline.artifacts import to_plain
        from pipeline.model import ModelConfig

        torch.save({"model": {"nonsense.weight": torch.zeros(3)}, "config": to_plain(asdict(ModelConfig()))}, path)
    with pytest.raises(PosecapError, match="odd.pt"):
        load_weights(path)


def test_malicious_checkpoint_through_the_cli(handmade, tmp_path, capsys):
    """pose2d.topdown_weights naming a hostile file: exit 2, one line, no payload."""
    import cv2
    import numpy as np

    from pipeline.artifacts import write_yaml

    marker = tmp_path / "pwned"
    evil = _hostile(tmp_path / "evil.pt", marker)
    session = handmade / "session"
    stream = session / "streams" / "cam0"
    stream.mkdir(parents=True)
    cv2.imwrite(str(stream / "0000.png"), np.full((48, 64, 3), 90, np.uint8))
    write_yaml(session / "session.yaml", {"cameras": ["cam0"], "stereo_pairs": [], "recordings": {"capture": {
        "kind": "capture", "cameras": {"cam0": {"stream": "streams/cam0", "image_size": [64, 48], "fps": 30.0,
                                                "frame_count": 1, "time_offset_s": 0.0}}}}}, "session@1")
    config = handmade / "posecap.yaml"
    config.write_text(config.read_text() + f"pose2d: {{topdown_weights: {json.dumps(str(evil))}, device: cpu}}\n")
    capsys.readouterr()
    assert main(["-q", "pose2d", str(session), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("posecap: error:")]
    assert len(lines) == 1 and "evil.pt" in lines[0] and "Traceback" not in err, err
    assert not marker.exists()


def test_malicious_vitpose_weights_are_refused(tmp_path):
    from pipeline.model.vitpose_weights import load_state_file

    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": Payload(marker)}, path)
    with pytest.raises(PosecapError, match="pytorch_model.bin"):
        load_state_file(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- source rules


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def _kw(node: ast.Call, key: str):
    for kw in node.keywords:
        if kw.arg == key:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


def test_source_uses_only_safe_loaders():
    """AST check (catches calls split over lines): torch.load needs weights_only=True; no unsafe YAML
    loaders, no pickle/marshal/dill/shelve imports, no eval/exec/os.system, no subprocess shell=True,
    and np.load never with allow_pickle=True."""
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                for n in names:
                    if n and n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib"):
                        found.append(f"{where}:{node.lineno}: imports {n}")
        for node, owner, name in _calls(tree):
            line = f"{where}:{node.lineno}"
            if owner == "torch" and name == "load" and _kw(node, "weights_only") is not True:
                found.append(f"{line}: torch.load without weights_only=True")
            if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"):
                found.append(f"{line}: yaml.{name}")
            if owner in ("np", "numpy") and name == "load" and _kw(node, "allow_pickle") not in (None, False):
                found.append(f"{line}: np.load with allow_pickle")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                found.append(f"{line}: {name}()")
            if owner == "os" and name in ("system", "popen"):
                found.append(f"{line}: os.{name}")
            if _kw(node, "shell") not in (None, False):
                found.append(f"{line}: shell=")
    assert not found, "\n".join(found)


def test_the_ast_rules_catch_what_they_should(tmp_path):
    bad = "import torch, yaml, os\nx = torch.load(\n  p,\n  map_location='cpu')\ny = yaml.load(t)\nos.system('x')\n"
    tree = ast.parse(bad)
    names = [(o, n) for _, o, n in _calls(tree)]
    assert ("torch", "load") in names and ("yaml", "load") in names and ("os", "system") in names
