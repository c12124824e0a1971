"""Ctrl-C during a finalizer: Python cannot raise it there (it prints "Exception ignored"
and drops it), so the CLI raises it just after; the run still ends "interrupted", exit 130."""

from __future__ import annotations

import signal
import time

from lookalike import cli


class PressesCtrlCWhenFreed:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C lands while the finalizer runs
        sum(range(1000))  # bytecodes for it to be handled on


def test_ctrl_c_inside_a_finalizer_is_raised_after_it(monkeypatch, capsys):
    reached: list[str] = []

    def command(args):
        freed = PressesCtrlCWhenFreed()
        del freed
        reached.append("after the finalizer")
        time.sleep(2)  # the interrupt must arrive here, not be lost
        reached.append("slept through")
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", command)
    assert cli.main(["info", "--db", "anywhere"]) == 130
    assert reached == ["after the finalizer"]
    err = capsys.readouterr().err
    assert err.strip() == "interrupted" and "Exception ignored" not in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
