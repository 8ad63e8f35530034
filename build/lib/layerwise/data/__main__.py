"""``python -m layerwise.data``: the data command (argparse lives in layerwise.cli.data)."""

import sys

from layerwise.cli.data import main

sys.exit(main())
