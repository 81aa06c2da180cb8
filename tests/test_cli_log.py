"""`msae --log FILE`: the log of a job holds its messages and its one-line result, never the
redraws of a progress bar, and the traceback of a crash."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from msae import cli


def test_progress_bars_reach_the_terminal_but_not_the_log():
    terminal, log = io.StringIO(), io.StringIO()
    tee = cli._Tee(terminal, log)
    print("loading store", file=tee)
    for _ in tqdm(range(50), file=tee, mininterval=0, desc="train"):
        pass
    with tqdm(total=3, file=tee, mininterval=0, leave=False, desc="inner") as bar:
        bar.update(1)
        tqdm.write("a message written while the bar is shown", file=tee)
        bar.update(2)
    print("msae train: done", file=tee)

    assert terminal.getvalue().count("\r") > 50  # the terminal saw every redraw
    assert log.getvalue() == "loading store\na message written while the bar is shown\nmsae train: done\n"


def test_log_holds_the_result_line_and_errors(tmp_path):
    log = tmp_path / "logs" / "plots.log"
    assert cli.main(["--log", str(log), "plots", "template", "--out", str(tmp_path / "offline.html")]) == 0
    assert log.read_text().startswith("msae plots: wrote ")  # printed on stdout, copied to the log

    bad = tmp_path / "bad.log"
    assert cli.main(["--log", str(bad), "sync", "--after", "dvc", "--root", str(tmp_path)]) == 2
    assert "msae sync: error:" in bad.read_text() and "not an msae project" in bad.read_text()


def test_log_holds_the_traceback_of_a_crash(tmp_path, monkeypatch):
    def crash(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_run", crash)
    log = tmp_path / "crash.log"
    with pytest.raises(RuntimeError):
        cli.main(["--log", str(log), "plots", "template"])
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: disk on fire" in text
