"""What every CLI shares: one logging format, SLURM job-array shards, exit codes, quiet third-party loggers."""

from __future__ import annotations

import logging
import os
import re

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "transformers", "matplotlib",
                 "PIL", "numba", "openTSNE")


def setup_logging(verbose: bool) -> None:
    """Time of day, level, logger, message — the same for every CLI; third-party chatter at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def shard_from_env(subset_id: int | None, num_subsets: int | None, parser) -> tuple[int, int]:
    """``--subset_id/--num_subsets``, else the SLURM job-array variables (TASK_ID − TASK_MIN of TASK_COUNT), else
    shard 0 of 1. A bad combination is a usage error through ``parser.error`` (exit 2)."""
    env = os.environ
    subset, count = subset_id, num_subsets
    slurm = [k for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT") if k in env]
    if subset is None and count is None and slurm:
        if len(slurm) < 2:
            parser.error(f"{slurm[0]} is set but not its partner (SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); "
                         f"pass --subset_id/--num_subsets")
        try:  # array 0-10:2 -> ids 0,2,...,10: shard (id - min) / step of count
            step = int(env.get("SLURM_ARRAY_TASK_STEP", 1))
            offset = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
        except ValueError:
            parser.error("SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT are not integers")
        if step < 1 or offset % step:
            parser.error(f"SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN = {offset} is not a multiple of "
                         f"SLURM_ARRAY_TASK_STEP = {step}")
        subset = offset // step
        logging.getLogger(parser.prog).info("shard %d of %d from the SLURM array variables", subset, count)
    subset, count = (0 if subset is None else subset), (1 if count is None else count)
    if count < 1 or not 0 <= subset < count:
        parser.error(f"--subset_id {subset} not in [0, {count - 1}] for --num_subsets {count}")
    return subset, count


def with_flags(message: str, names) -> str:
    """A library message (which names parameters) as the CLI user reads it: ``layers: 0-9 not in …`` →
    ``--layers: 0-9 not in …``, ``max_points=3`` → ``--max_points=3``, for each parameter in ``names`` (e.g.
    ``vars(args)``); names already written as flags are left alone."""
    for name in sorted(names, key=len, reverse=True):
        message = re.sub(rf"(?<![-\w.]){re.escape(name)}(?=[=:])", f"--{name}", message)
    return message
