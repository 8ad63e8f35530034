#!/usr/bin/env python3
"""Compare extraction folders layer by layer (see layerwise/cli/compare.py, or --help). Same as the console script layerwise-compare."""

import sys

from layerwise.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
