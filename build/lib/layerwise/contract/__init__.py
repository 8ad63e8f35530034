"""What both halves agree on: layer keys and run identity (``layout``), the feature-file store (``store``), the frame
grid and time matching (``grid``), display names (``names``) and the typed results (``results``).
Imports nothing above itself; never imports torch."""
