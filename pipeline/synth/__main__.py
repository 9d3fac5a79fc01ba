"""``python -m pipeline.synth OUT_DIR [options]``."""

import sys

from pipeline.synth.cli import main

sys.exit(main())
