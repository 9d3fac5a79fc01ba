"""Small real stages for engine tests: they read and write real files in a session folder.

    make   : external numbers.txt  -> a/numbers.npy   (params: scale)
    total  : a/numbers.npy         -> b/total.yaml    (params: offset)
    report : b/total.yaml, a       -> c/report.yaml
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.artifacts import atomic_path, read_yaml, write_npy, write_yaml
from pipeline.config import param
from pipeline.stage import Stage, StageContext, static_paths


@dataclass(frozen=True)
class MakeParams:
    """make: scale the external numbers."""

    source: str = param("numbers.txt", "text file of numbers, relative to the config file")
    scale: float = param(1.0, "multiply every number by this")


@dataclass(frozen=True)
class TotalParams:
    """total: sum the numbers."""

    offset: float = param(0.0, "added to the sum")
    crash_mid_write: bool = param(False, "test hook: die after writing half of the output")


@dataclass(frozen=True)
class ReportParams:
    """report: describe the total."""

    title: str = param("report", "title written in the report")


def _make(ctx: StageContext) -> None:
    src = ctx.config_dir / ctx.params.source
    values = np.array([float(x) for x in src.read_text().split()]) * ctx.params.scale
    write_npy(ctx.path("a/numbers.npy"), values)


def _total(ctx: StageContext) -> None:
    values = np.load(ctx.path("a/numbers.npy"))
    dest = ctx.path("b/total.yaml")
    if ctx.params.crash_mid_write:
        with atomic_path(dest) as tmp:
            tmp.write_text("schema: posecap/total@1\ntotal: ")
            raise RuntimeError("simulated crash in the middle of writing")
    write_yaml(dest, {"total": float(values.sum() + ctx.params.offset)}, "total@1")


def _report(ctx: StageContext) -> None:
    total = read_yaml(ctx.path("b/total.yaml"), "total@1")["total"]
    n = len(np.load(ctx.path("a/numbers.npy")))
    write_yaml(ctx.path("c/report.yaml"), {"title": ctx.params.title, "total": total, "n": n}, "report@1")


MAKE = Stage("make", "1", MakeParams, inputs=lambda ctx: [ctx.config_dir / ctx.params.source],
             outputs=static_paths("a"), run=_make)
TOTAL = Stage("total", "1", TotalParams, inputs=static_paths("a/numbers.npy"),
              outputs=static_paths("b/total.yaml"), run=_total)
REPORT = Stage("report", "1", ReportParams, inputs=static_paths("b/total.yaml", "a"),
               outputs=static_paths("c/report.yaml"), run=_report)
ALL = [REPORT, MAKE, TOTAL]  # deliberately not in dependency order
SECTIONS = {s.name: s.params_type for s in ALL}
