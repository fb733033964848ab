"""Progress for people and for files (issue 17, item 3): tqdm bars on a terminal; elsewhere one plain status
line every N seconds, never a carriage return."""

import io
import sys

import pytest

from deepcascade import progress as P


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(P.time, "monotonic", c)
    return c


def test_status_lines_are_throttled_and_plain(clock):
    out = io.StringIO()
    bar = P.StatusLines(total=1000, desc="deep", unit="it", every=30, stream=out)
    for _ in range(1000):  # 1000 steps over 95 simulated seconds
        clock.t += 0.095
        bar.update(1)
        if bar.n == 500:
            bar.set_postfix({"critic": "-1.9"})
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60 and 90 s, and the last one
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0].startswith("deep: 316/1000 it (32%), 10.5 it/s, 0:30 elapsed, ~1:04 left")
    assert lines[-1].startswith("deep: 1000/1000 it (100%)") and lines[-1].endswith("critic=-1.9")


def test_a_short_loop_writes_nothing(clock):
    out = io.StringIO()
    with P.StatusLines(total=10, desc="x", every=30, stream=out) as bar:
        for _ in range(10):
            clock.t += 1
            bar.update()
    assert out.getvalue() == ""


def test_every_zero_turns_lines_off(clock):
    out = io.StringIO()
    bar = P.StatusLines(total=10, every=0, stream=out)
    clock.t += 1e6
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""


def test_iterable_and_slow_rates(clock):
    out = io.StringIO()
    bar = P.StatusLines(range(3), desc="cache", unit="img", every=30, stream=out)
    for _ in bar:
        clock.t += 40  # 40 s per image
    bar.close()
    assert out.getvalue().splitlines()[0] == "cache: 1/3 img (33%), 40 s/img, 0:40 elapsed, ~1:20 left"


def test_terminal_gets_tqdm_and_files_get_lines(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    from tqdm import tqdm

    bar = P.progress(total=5, desc="t")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(P.progress(total=5), P.StatusLines)
    assert not isinstance(P.progress(total=5, disable=True), tqdm)
    monkeypatch.setattr(sys, "stderr", None)  # closed at start: no crash
    P.progress(total=5).update(5)


def test_interval_from_environment_and_cli(monkeypatch):
    monkeypatch.setenv(P.ENV, "7.5")
    assert P.every_seconds() == 7.5
    monkeypatch.setenv(P.ENV, "nonsense")
    assert P.every_seconds() == P.DEFAULT_EVERY
    monkeypatch.delenv(P.ENV)
    assert P.every_seconds() == P.DEFAULT_EVERY
    from conftest import cli_inprocess

    monkeypatch.setenv(P.ENV, "30")  # restored after the test: main() sets the variable for the whole process
    assert cli_inprocess("--progress-every", "5", "config").returncode == 0
    assert P.every_seconds() == 5.0
    r = cli_inprocess("--progress-every", "-1", "config")
    assert r.returncode == 2 and "--progress-every" in r.stderr
