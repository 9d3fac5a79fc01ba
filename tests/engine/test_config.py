"""Config parsing: typed sections, unknown keys with suggestions, wrong types, defaults file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from pipeline.config import from_mapping, load_config, param, render_defaults
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    """inner section"""

    size: tuple[int, int] = param((9, 6), "two ints")


@dataclass(frozen=True)
class Section:
    """a test section"""

    threshold_px: float = param(4.0, "a float")
    count: int = param(3, "an int")
    mode: Literal["fast", "exact"] = param("fast", "a choice")
    names: list[str] = param([], "a list")
    inner: Inner = param(Inner(), "nested")
    maybe: float | None = param(None, "optional float")


def test_defaults_and_overrides(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("session_dir: s\nsec:\n  threshold_px: 2\n  names: [a, b]\n  inner: {size: [3, 4]}\n")
    config = load_config(cfg, {"sec": Section})
    assert config["sec"] == Section(threshold_px=2.0, names=["a", "b"], inner=Inner((3, 4)))
    assert config.session_dir == (tmp_path / "s").resolve()


@pytest.mark.parametrize("text, message", [
    ("sec:\n  treshold_px: 1\n", r"unknown key 'sec.treshold_px'; did you mean 'sec.threshold_px'\?"),
    ("sek:\n  count: 1\n", r"unknown key 'sek'; did you mean 'sec'\?"),
    ("sec:\n  count: three\n", r"key 'sec.count' expects int, got 'three' \(str\)"),
    ("sec:\n  count: 1.5\n", r"key 'sec.count' expects int, got 1.5 \(float\)"),
    ("sec:\n  mode: fats\n", r"key 'sec.mode' expects one of 'fast', 'exact', got 'fats'; did you mean 'fast'\?"),
    ("sec:\n  inner: {size: [1, 2, 3]}\n", r"key 'sec.inner.size' expects tuple\[int, int\]"),
    ("sec:\n  maybe: yes\n", r"key 'sec.maybe' expects float or null, got True"),
    ("- a\n- b\n", r"expected a YAML mapping of sections, got list"),
    ("sec: [\n", r"invalid YAML at line"),
])
def test_errors_are_one_line_and_name_the_key(tmp_path: Path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(cfg, {"sec": Section})
    assert "\n" not in str(info.value) and str(cfg) in str(info.value)


def test_from_mapping_rejects_non_mapping():
    with pytest.raises(ConfigError, match="key 'sec' expects a mapping"):
        from_mapping(Section, [1, 2], "f.yaml", prefix="sec.")


def test_render_defaults_lists_every_field_with_help():
    text = render_defaults({"sec": Section})
    for name in ("threshold_px", "count", "mode", "names", "inner", "maybe"):
        assert f"  {name}: " in text
    assert "inner: {size: [9, 6]}   # nested" in text


def test_committed_default_yaml_is_current():
    """configs/default.yaml must list every param of every registered stage (regenerate with
    `posecap defaults > configs/default.yaml`)."""
    from pipeline.cli import DEFAULTS_HEADER
    from stages import config_sections

    committed = (Path(__file__).parents[2] / "configs" / "default.yaml").read_text()
    assert committed == render_defaults(config_sections(), header=DEFAULTS_HEADER)
