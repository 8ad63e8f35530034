"""Figures, plots, scatter, run card and the self-contained HTML of both commands; summary.json/csv. No torch."""
