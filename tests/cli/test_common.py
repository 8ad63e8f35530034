"""One parser for every CLI: dashed spellings accepted, unknown flags answered with the closest match, one --help
style (formatter, width, prog name, defaults shown, an example epilog)."""

from __future__ import annotations

import pytest

from layerwise.cli import common, compare, data, extract, visualize
from layerwise.contract.names import plural

CLIS = {  # module -> (prog, a flag of it, a value)
    extract: ("extract_features.py", "--audio_dir", "somewhere"),
    visualize: ("visualize_features.py", "--features_dir", "somewhere"),
    compare: ("compare_features.py", "--output_dir", "somewhere"),
}


@pytest.mark.parametrize("module", list(CLIS), ids=lambda m: m.__name__)
def test_dashed_spelling_is_the_same_flag(module):
    _, flag, value = CLIS[module]
    extra = ["--features_dirs", "a", "b"] if module is compare else []
    dest = flag[2:]
    dashed = "--" + dest.replace("_", "-")
    assert getattr(module.build_parser().parse_args([dashed, value, *extra]), dest) == value
    assert getattr(module.build_parser().parse_args([f"{dashed}={value}", *extra]), dest) == value
    assert getattr(module.build_parser().parse_args([flag, value, *extra]), dest) == value


@pytest.mark.parametrize("module", list(CLIS), ids=lambda m: m.__name__)
def test_unknown_flag_gets_the_closest_match(module, capsys):
    _, flag, value = CLIS[module]
    typo = flag[:-1] + "x" + flag[-1]  # --audio_dir -> --audio_dixr
    extra = ["--features_dirs", "a", "b"] if module is compare else []
    with pytest.raises(SystemExit) as exit_:
        module.build_parser().parse_args([typo, value, *extra])
    assert exit_.value.code == 2
    assert f"did you mean {flag}?" in capsys.readouterr().err


def test_data_cli_accepts_both_spellings_and_suggests(capsys):
    parser = data.build_parser()
    assert parser.parse_args(["download", "--delete_archive", "--no_progress"]).delete_archive is True
    assert parser.parse_args(["download", "--no-progress"]).no_progress is True
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["download", "--delete-arxhive"])
    assert exit_.value.code == 2 and "did you mean --delete-archive?" in capsys.readouterr().err


@pytest.mark.parametrize("module", list(CLIS), ids=lambda m: m.__name__)
def test_one_help_style(module):
    parser = module.build_parser()
    assert isinstance(parser, common.CliParser) and parser.formatter_class is common.HelpFormatter
    assert parser.prog == CLIS[module][0]
    text = parser.format_help()
    assert text.startswith(f"usage: {CLIS[module][0]}")
    options = text[text.index("options:"):text.index(parser.epilog.splitlines()[0])]  # descriptions stay as written
    assert parser._get_formatter()._width == common.HELP_WIDTH
    assert max(len(line) for line in options.splitlines()) <= common.HELP_WIDTH
    assert "(default: " in text and f"python {CLIS[module][0]}" in text  # defaults shown, an example epilog
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "--no_progress" in text


def test_plural():
    assert [plural(n, "file") for n in (0, 1, 2, 1234)] == ["0 files", "1 file", "2 files", "1,234 files"]
    assert plural(1, "analysis", "analyses") == "1 analysis" and plural(3, "analysis", "analyses") == "3 analyses"


# ---------------------------------------------------------------------------------------------- SIGTERM as a stop
def test_sigterm_raises_keyboard_interrupt_once_and_restores_the_handlers():
    import signal
    import sys

    from layerwise.cli.common import interrupted_by, stops_as_interrupt

    before, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), stops_as_interrupt() as terminated:
        signal.raise_signal(signal.SIGTERM)
    assert terminated == [signal.SIGTERM] and interrupted_by(terminated) == "terminated (SIGTERM)"
    assert interrupted_by([]) == "interrupted"
    with stops_as_interrupt() as terminated:
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGTERM)  # a second SIGTERM while stopping: recorded, not raised
    assert len(terminated) == 2
    assert signal.getsignal(signal.SIGTERM) is before and sys.unraisablehook is hook


def test_an_interrupt_swallowed_in_a_destructor_is_raised_again(capfd):
    """Python prints and drops an exception raised inside __del__; the SIGTERM must still stop the block."""
    import gc
    import signal
    import time

    from layerwise.cli.common import stops_as_interrupt

    class Dies:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, inside the destructor

    deadline = time.monotonic() + 5.0
    with pytest.raises(KeyboardInterrupt), stops_as_interrupt() as terminated:
        Dies()  # destroyed at once: the interrupt is raised inside __del__ and swallowed
        gc.collect()
        while time.monotonic() < deadline:  # the work goes on: the re-sent signal must stop it
            time.sleep(0.001)
    assert terminated and time.monotonic() < deadline
    assert "Exception ignored" not in capfd.readouterr().err  # the swallowed interrupt is not printed


def test_ctrl_c_then_sigterm_while_stopping_raises_once_and_says_interrupted():
    import signal

    from layerwise.cli.common import interrupted_by, stops_as_interrupt

    before = signal.getsignal(signal.SIGINT)
    with stops_as_interrupt() as stops:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            signal.raise_signal(signal.SIGTERM)  # while the stop line is written: recorded, not raised
            signal.raise_signal(signal.SIGINT)
    assert stops == [signal.SIGINT, signal.SIGTERM, signal.SIGINT] and interrupted_by(stops) == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before


def test_until_exit_keeps_a_late_sigterm_from_killing_the_process():
    """A command that is the process (main() without argv): after its block, a SIGTERM during the interpreter's
    shutdown is ignored, so the exit status stays the one the command chose (not 143)."""
    import subprocess
    import sys

    code = ("import os, signal, sys\n"
            "from layerwise.cli.common import stops_as_interrupt\n"
            "with stops_as_interrupt(until_exit=True):\n"
            "    pass\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "sys.exit(3)\n")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 3


def test_owns_process_only_without_argv_and_outside_an_interactive_host(monkeypatch):
    """A script or console entry owns its process; main([...]) and IPython's %run (main() with IPython loaded) do
    not, so a notebook kernel gets its Ctrl-C handling back."""
    import sys
    import types

    from layerwise.cli.common import owns_process

    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert owns_process(None) and not owns_process(["--help"])
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    assert not owns_process(None)


def test_the_extractions_stop_handler_takes_a_quick_second_signal_of_either_kind_as_a_copy(monkeypatch):
    """One handler for SIGINT and SIGTERM: Ctrl-C then the wrapper's SIGTERM within SAME_STOP_SECONDS is one stop;
    a signal later than that aborts (KeyboardInterrupt)."""
    import signal
    import threading

    from layerwise.cli import extract
    from layerwise.cli.common import SAME_STOP_SECONDS

    clock = [100.0]
    monkeypatch.setattr(extract.time, "monotonic", lambda: clock[0])
    stop = threading.Event()
    handler = extract._finish_then_stop(stop)
    handler(signal.SIGINT, None)
    assert stop.is_set()
    clock[0] += SAME_STOP_SECONDS / 2
    handler(signal.SIGTERM, None)  # a copy: no abort
    clock[0] += SAME_STOP_SECONDS
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
