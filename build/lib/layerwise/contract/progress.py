"""Progress a person sees while waiting: one tqdm bar per stage, on stderr, with rate and estimate; one switch.

Every stage that can take more than a few seconds (the streaming pass, PCA/t-SNE per layer, each measure family per
layer, figures, the comparison's passes, merges, downloads) iterates through :func:`bar`. The bar is drawn on stderr
also when stderr is not a terminal (a log file, the wrapper's capture), so a long stage is never silent; the CLIs'
``--no_progress`` turns every bar off with :func:`set_enabled`. No heavy imports (the CLIs import this at start-up).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

MIN_INTERVAL_S = 1.0  # s between two redraws of a bar: at most one line a second in a captured log
_state = {"enabled": True}  # the process-wide switch (set once by a CLI from --no_progress)


def set_enabled(enabled: bool) -> None:
    """Turn every progress bar of this process on or off (``--no_progress`` → ``set_enabled(False)``)."""
    _state["enabled"] = bool(enabled)


def is_enabled() -> bool:
    """Whether progress bars are drawn (see :func:`set_enabled`)."""
    return _state["enabled"]


def bar(iterable: Iterable, desc: str, unit: str, *, total: int | None = None, enabled: bool | None = None):
    """``iterable`` wrapped in a tqdm bar on stderr named ``desc`` counting ``unit`` (with rate and time left).

    enabled : None follows the process-wide switch; False turns this bar off (a caller's own ``progress`` flag).
    """
    from tqdm import tqdm  # deferred: tqdm is light, but the CLIs' --help should not wait for it

    on = is_enabled() and enabled is not False
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not on, file=sys.stderr, dynamic_ncols=True,
                mininterval=MIN_INTERVAL_S)
