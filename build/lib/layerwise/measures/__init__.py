"""What each layer encodes, on arrays: span probes and label PWCCA (``span``), alignment-free measures (the CCA
family, ``alignment_free``), PWCCA and the published protocol (``pwcca``, ``pasad``). No torch."""
