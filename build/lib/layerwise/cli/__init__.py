"""Command-line front ends: parse flags, build the options, call one library function, print, map errors to exit
codes (0 ok, 1 some inputs failed, 2 usage error, 130 interrupted). The top-level scripts and the console scripts
``layerwise-extract`` / ``layerwise-visualize`` / ``layerwise-compare`` call ``main`` here."""
