"""What every CLI shares: one argument parser (flag spellings, "did you mean", one ``--help`` style), one logging
format, SLURM job-array shards, exit codes, quiet third-party loggers."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import pathlib
import re
import signal
import sys
import threading
from contextlib import contextmanager

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"
NOISY_LOGGERS = ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "transformers", "matplotlib",
                 "PIL", "numba", "openTSNE")


HELP_WIDTH = 100  # columns of every CLI's --help (fits an 80-column terminal's wrap-free 100-column log viewer)
SUGGEST_CUTOFF = 0.6  # difflib similarity from which an unknown flag is answered with "did you mean"
UNRECOGNIZED = "unrecognized arguments: "  # argparse's message prefix for flags it does not know


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The one ``--help`` style: descriptions and example epilogs as written, HELP_WIDTH columns, and every default
    that says something shown as ``(default: …)`` (None, False and suppressed defaults are not)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=HELP_WIDTH, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default" in text.lower() or not action.option_strings
                or default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def flag_spellings(flag: str) -> tuple[str, ...]:
    """The spellings of a long flag a user may type: ``--audio_dir`` -> (``--audio_dir``, ``--audio-dir``)."""
    if not flag.startswith("--"):
        return (flag,)
    body = flag[2:]
    return tuple(dict.fromkeys((flag, "--" + body.replace("_", "-"), "--" + body.replace("-", "_"))))


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the project's conventions, used by every CLI (and its sub-commands):

    - each long flag is accepted with dashes or underscores (``--audio-dir`` = ``--audio_dir``);
    - an unknown flag is answered with the closest known one (``did you mean --audio_dir?``, difflib), exit 2;
    - :class:`HelpFormatter` unless another formatter is named.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def known_flags(self) -> list[str]:
        """Every long flag of this parser and of its sub-commands' parsers."""
        flags = [f for f in self._option_string_actions if f.startswith("--")]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += sub.known_flags() if isinstance(sub, CliParser) else list(sub._option_string_actions)
        return list(dict.fromkeys(flags))

    def canonical(self, token: str) -> str:
        """``token`` with its flag name respelt as this parser knows it (``--audio-dir=x`` -> ``--audio_dir=x``);
        anything else (values, unknown flags, flags of a sub-command) unchanged."""
        if not token.startswith("--") or token == "--":
            return token
        name, eq, value = token.partition("=")
        if name in self._option_string_actions:
            return token
        for spelling in flag_spellings(name)[1:]:
            if spelling in self._option_string_actions:
                return spelling + eq + value
        return token

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)
        args = [self.canonical(a) for a in args[:end]] + args[end:]
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        """argparse's usage error (exit 2), with "did you mean --x?" for each unknown flag that is close to one."""
        if message.startswith(UNRECOGNIZED):
            known = self.known_flags()
            hints = []
            for token in message[len(UNRECOGNIZED):].split():
                name = token.partition("=")[0]
                if not name.startswith("-"):
                    continue
                close = difflib.get_close_matches(name.replace("-", "_"), [k.replace("-", "_") for k in known],
                                                  n=1, cutoff=SUGGEST_CUTOFF)
                if close:
                    hints.append(f"{name}: did you mean {known[[k.replace('-', '_') for k in known].index(close[0])]}?")
            if hints:
                message = f"{message} ({'; '.join(hints)})"
        super().error(message)


def setup_logging(verbose: bool) -> None:
    """Time of day, level, logger, message — the same for every CLI; third-party chatter at WARNING."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def add_shard_arguments(group, unit: str) -> None:
    """``--subset_id`` / ``--num_subsets`` of a command that shards ``unit`` (e.g. "file i of the sorted list goes to
    shard i mod N")."""
    group.add_argument("--subset_id", type=int, default=None,
                       help=f"shard K: {unit} (default 0, or SLURM_ARRAY_TASK_ID in a job array, with --num_subsets)")
    group.add_argument("--num_subsets", type=int, default=None,
                       help="number of shards N (default 1; required in a SLURM job array: a re-run of one task "
                            "cannot know N from the array)")


def shard_from_env(subset_id: int | None, num_subsets: int | None, parser) -> tuple[int, int]:
    """``(subset_id, num_subsets)`` from the flags, inside a SLURM job array from ``SLURM_ARRAY_TASK_ID``.

    The number of shards is a property of the job, never of one submission: ``sbatch --array=17 job.sh``, which
    re-runs one killed task, sets ``SLURM_ARRAY_TASK_COUNT=1`` and ``MIN=MAX=17``, so neither the count nor the
    offset of the array can say which shard of how many this is. So ``--num_subsets N`` must be given (in the job
    script) whenever the shard would come from the array, and the shard IS the task id: ``SLURM_ARRAY_TASK_ID`` =
    K gives shard K of N in the first submission (``--array=0-63``) and in any re-run of that task
    (``--array=17``). A task id outside ``[0, N-1]``, an array whose ``SLURM_ARRAY_TASK_MAX`` is ≥ N, or
    ``--num_subsets`` without a shard is a usage error through ``parser.error`` (exit 2), never a silent shard.
    """
    env = os.environ
    task = env.get("SLURM_ARRAY_TASK_ID")
    if subset_id is None and task is not None:
        if num_subsets is None:
            parser.error(f"SLURM_ARRAY_TASK_ID={task} is set but --num_subsets is not: the number of shards must "
                         "come from the job script (a re-run of one task, sbatch --array=K, sees "
                         "SLURM_ARRAY_TASK_COUNT=1); add --num_subsets N to its command (shard = SLURM_ARRAY_TASK_ID,"
                         " array 0..N-1), or pass --subset_id/--num_subsets")
        try:
            subset_id = int(task)
            highest = int(env.get("SLURM_ARRAY_TASK_MAX", task))
        except ValueError:
            parser.error(f"SLURM_ARRAY_TASK_ID={task!r} / SLURM_ARRAY_TASK_MAX are not integers")
        if highest >= num_subsets >= 1:
            parser.error(f"the SLURM array runs up to task {highest} but --num_subsets is {num_subsets}: the shard "
                         f"is SLURM_ARRAY_TASK_ID, so submit --array=0-{num_subsets - 1} (or a part of it)")
        logging.getLogger(parser.prog).info("shard %d of %d: SLURM_ARRAY_TASK_ID of --num_subsets", subset_id,
                                            num_subsets)
    if subset_id is None and num_subsets not in (None, 1):
        parser.error(f"--num_subsets {num_subsets} without --subset_id (and outside a SLURM job array): say which "
                     "shard, --subset_id K")
    subset, count = (0 if subset_id is None else subset_id), (1 if num_subsets is None else num_subsets)
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


def flags_given(parser: argparse.ArgumentParser, argv=None) -> frozenset[str]:
    """The destinations (``seed``, ``max_points``) of the flags typed in ``argv`` (None: ``sys.argv[1:]``), a flag
    given with its default value included: ``argv`` parsed again with every default suppressed, so only what was
    typed lands in the namespace. Changes ``parser``'s defaults: pass a fresh one (``build_parser()``)."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv)))


# A second stop signal this soon after the first is a copy of it, not a second Ctrl-C: a terminal or a job system
# signals the whole process group, and extract_hubert_features.sh forwards the one it got to its running step.
SAME_STOP_SECONDS = 1.0
RESEND_SECONDS = 0.05  # a swallowed stop is signalled again after this: long after the unraisable hook has returned
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; a batch system's time limit or ``kill``


def owns_process(argv) -> bool:
    """Whether a command's ``main(argv)`` is the whole process: called without argv (a script, a console entry
    point) and not inside an interactive host (IPython's ``%run``, a notebook kernel, ``python -i``), whose own
    Ctrl-C handling must come back. Such a command may ignore stop signals after its last line."""
    interactive = hasattr(sys, "ps1") or sys.flags.interactive or any(
        name in sys.modules for name in ("IPython", "ipykernel"))
    return argv is None and not interactive


@contextmanager
def stops_as_interrupt(*, until_exit: bool = False):
    """Inside the block the first SIGINT or SIGTERM (a batch system's time limit, ``kill``) raises KeyboardInterrupt
    in the main thread, so a command stops on either as on Ctrl-C (one line, exit 130); later ones while it stops
    are recorded, not raised (no traceback in the middle of the line). Yields the list of stop signals received;
    the caller treats any exception after the first as the stop (a lazy import wraps it in a RuntimeError) and, once
    the block is left, a non-empty list as a stop even when the run went on. An interrupt that Python swallows
    (raised inside a ``__del__`` or a gc callback, where it is printed and dropped) is not printed: a helper thread
    signals again until it is raised where it stops the run.

    On exit the previous handlers and ``sys.unraisablehook`` come back; with ``until_exit`` (a command that is the
    process, :func:`owns_process`) SIGTERM and SIGINT stay ignored instead, so a signal during the
    interpreter's shutdown (≈ 0.5 s) cannot kill it after its line (exit 143). Off the main thread (where no
    handler can be set) it does nothing."""
    terminated: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield terminated
        return
    pending = threading.Event()  # an interrupt was swallowed: the resender's signal raises it again
    resender: list[threading.Thread] = []
    stopped = threading.Event()
    main_thread = threading.main_thread().ident

    def stop(signum, frame):
        terminated.append(signum)
        if len(terminated) == 1 or pending.is_set():
            pending.clear()
            raise KeyboardInterrupt

    def resend():
        while not stopped.wait(RESEND_SECONDS) and pending.is_set():
            signal.pthread_kill(main_thread, terminated[0])

    def unraisable(info):
        if not (terminated and info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt)):
            hook(info)
            return
        pending.set()
        if not resender or not resender[-1].is_alive():  # one resender at a time; a later swallow starts another
            resender.append(threading.Thread(target=resend, name="stop-resend", daemon=True))
            resender[-1].start()

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield terminated
    finally:
        stopped.set()
        pending.clear()
        for thread in resender:
            thread.join()  # no signal of it can reach the handlers set below
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if until_exit else handler)
        sys.unraisablehook = hook


def interrupted_by(terminated: list[int]) -> str:
    """The first words of a command's one line when it stops on a signal: ``terminated (SIGTERM)`` for a SIGTERM
    first, else ``interrupted`` (Ctrl-C, or a KeyboardInterrupt raised otherwise)."""
    return "terminated (SIGTERM)" if terminated and terminated[0] == signal.SIGTERM else "interrupted"


def stopped_text(output_dir: str, before: dict, *, shard: bool = False, advice: str = "") -> str:
    """What a stopped analysis or comparison had written to ``output_dir`` (the files that differ from ``before``,
    ``contract.outputs.snapshot``) and what it had not, in one line. Every output is written whole (atomically),
    the numbers first and report.html last; a ``shard`` writes only its partial. ``advice`` goes before "run the
    same command again" (e.g. "free some space, then ")."""
    from layerwise.contract.outputs import written_since

    written = written_since(output_dir, before)
    again = f"{advice}run the same command again"
    stale = "" if shard else _stale_report(output_dir)
    if not written:
        return f"nothing was written to {output_dir}{stale}; {again}"
    if shard:
        return f"{', '.join(written)} written to {output_dir} (complete files); {again}"
    if "report.html" in written:
        return f"{', '.join(written)} written to {output_dir}; the run had finished writing its report"
    return (f"{', '.join(written)} written to {output_dir} (complete files); report.html and the remaining figures "
            f"were not written{stale}: {again}")


def _stale_report(output_dir: str) -> str:
    """``" (the report.html there is an earlier run's)"`` when ``output_dir`` holds a report.html this run did not
    write, else ``""``: a stopped run must not let an old report pass for its own."""
    return " (the report.html there is an earlier run's)" if (pathlib.Path(output_dir) / "report.html").exists() else ""
