#!/usr/bin/env python3
"""Layer-wise analysis of extracted features (see layerwise/cli/visualize.py, or --help). Same as the console script layerwise-visualize."""

import sys

from layerwise.cli.visualize import main

if __name__ == "__main__":
    sys.exit(main())
