#!/usr/bin/env python3
"""Extract every layer's features of a speech SSL model (see layerwise/cli/extract.py, or --help). Same as the console script layerwise-extract."""

import sys

from layerwise.cli.extract import main

if __name__ == "__main__":
    sys.exit(main())
