"""``posecap rig-import`` / ``posecap rig-export``: convert rigs between posecap and other tools.

Usage (``main`` takes the sub-command first; the top-level CLI maps ``rig-import ARGS`` to
``main(["import", *ARGS])`` and ``rig-export ARGS`` to ``main(["export", *ARGS])``)::

    posecap rig-import SRC --format anipose|pose2sim|easymocap [--units mm] [--out calib/rig.yaml]
    posecap rig-export calib/rig.yaml --format anipose|pose2sim|easymocap --out DEST [--units mm]

``SRC``/``DEST`` is the format's file (``calibration.toml``, ``Calib.toml``) or, for EasyMocap,
the folder of ``intri.yml`` and ``extri.yml``. Importing into a session folder writes its
``calib/rig.yaml`` (pass the session folder as ``--out``), ready for ``posecap triangulate``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import PosecapError

IMPORT_FORMATS = ("anipose", "pose2sim", "easymocap", "posecap")


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="read another tool's rig and write calib/rig.yaml",
                       description="Read a rig written by aniposelib/anipose, Pose2Sim or EasyMocap and write "
                                   "posecap's rig.yaml (metres, world -> camera).")
    p.add_argument("source", help="calibration.toml / Calib.toml, or the EasyMocap folder with intri.yml, extri.yml")
    p.add_argument("--format", "-f", required=True, choices=IMPORT_FORMATS, help="format of SOURCE")
    p.add_argument("--units", choices=("m", "cm", "mm"), default=None,
                   help="length unit of SOURCE's translations (default: anipose mm, others m)")
    p.add_argument("--out", "-o", default="calib/rig.yaml",
                   help="rig.yaml to write, or a session folder (writes <folder>/calib/rig.yaml)")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write calib/rig.yaml in another tool's format",
                       description="Write posecap's rig.yaml as aniposelib/anipose calibration.toml, Pose2Sim "
                                   "Calib.toml or EasyMocap intri.yml/extri.yml.")
    p.add_argument("rig", help="posecap rig.yaml, or a session folder (reads <folder>/calib/rig.yaml)")
    p.add_argument("--format", "-f", required=True, choices=IMPORT_FORMATS, help="format to write")
    p.add_argument("--out", "-o", required=True,
                   help="destination file (calibration.toml, Calib.toml) or folder (EasyMocap)")
    p.add_argument("--units", choices=("m", "cm", "mm"), default=None,
                   help="length unit of the written translations (default: anipose mm, others m)")


def build_arg_parser() -> argparse.ArgumentParser:
    """The parser of ``main``: sub-commands ``import`` and ``export``."""
    parser = argparse.ArgumentParser(prog="posecap rig", description="Convert camera rigs between posecap and "
                                     "aniposelib/anipose, Pose2Sim and EasyMocap.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{import,export}")
    _add_import(sub)
    _add_export(sub)
    return parser


def _rig_path(arg: str) -> Path:
    p = Path(arg)
    return p / "calib" / "rig.yaml" if p.is_dir() else p


def main(argv: list[str] | None = None) -> int:
    """Run ``import`` or ``export``; a user error prints one line and returns 2."""
    args = build_arg_parser().parse_args(argv)
    from pipeline.calibration.rig_formats import export_rig, import_rig
    from pipeline.geometry.rig import Rig

    try:
        if args.command == "import":
            rig = import_rig(args.source, args.format, units=args.units)
            out = _rig_path(args.out)
            export_rig(rig, out, "posecap")
            print(f"wrote {out} ({len(rig)} cameras: {', '.join(rig.names)})")
        else:
            rig = Rig.load(_rig_path(args.rig))
            files = export_rig(rig, args.out, args.format, units=args.units)
            print("wrote " + ", ".join(str(f) for f in files))
    except PosecapError as exc:
        print(f"posecap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def import_main(argv: list[str] | None = None) -> int:
    """``posecap rig-import ARGS`` = ``main(["import", *ARGS])``."""
    return main(["import", *(sys.argv[1:] if argv is None else argv)])


def export_main(argv: list[str] | None = None) -> int:
    """``posecap rig-export ARGS`` = ``main(["export", *ARGS])``."""
    return main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
