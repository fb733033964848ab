"""A closed stdout or stderr ends no command with a traceback (issue 17, item 2).

Real pipes and closed descriptors, in subprocesses: the reader of stdout goes away (``deepcascade config |
head``) -> exit 141, nothing on stderr; stdout or stderr closed before the start (``>&-``, ``2>&-``) -> the
command does its work and exits as usual; stderr's reader goes away in the middle of a run -> the run finishes.
"""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

CMD = [sys.executable, "-m", "deepcascade"]


def reader_gone(*args, stderr=subprocess.PIPE):
    """Run with stdout a pipe whose read end is closed at once (what `| head` does once it has its lines)."""
    p = subprocess.Popen(CMD + [str(a) for a in args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    p.stdout.close()
    err = p.stderr.read() if stderr == subprocess.PIPE else ""
    return p.wait(), err


def closed(fds, *args):
    """Run with the given descriptors closed in the child (``>&-`` / ``2>&-``)."""
    def close():
        for fd in fds:
            os.close(fd)
    return subprocess.run(CMD + [str(a) for a in args], preexec_fn=close,
                          stdout=None if 1 in fds else subprocess.PIPE,
                          stderr=None if 2 in fds else subprocess.PIPE, text=True)


@pytest.mark.parametrize("args", [("config",), ("--help",), ("config", "--preset", "default")])
def test_stdout_reader_gone_is_quiet(args):
    rc, err = reader_gone(*args)
    assert rc == 141, err
    assert err == ""


def test_user_error_with_stdout_reader_gone_still_says_why():
    rc, err = reader_gone("config", "--set", "data.image_size=100")
    assert rc == 2 and "data.image_size" in err and "Traceback" not in err


def test_closed_stdout_and_stderr_from_the_start(tmp_path):
    # a command that prints: its work is done, the prints go nowhere
    r = closed([1], "prepare", "synthetic", "--out", tmp_path / "a", "--n", "1", "--n-test", "1", "--size", "32")
    assert r.returncode == 0 and r.stderr == ""
    # both closed: the files it opens must not take descriptors 1 and 2 (stray output would land in them)
    r = closed([1, 2], "prepare", "synthetic", "--out", tmp_path / "b", "--n", "2", "--n-test", "1", "--size", "32")
    assert r.returncode == 0
    assert json.loads((tmp_path / "b" / "synthetic.json").read_text())["complete"] is True
    for p in (tmp_path / "b").rglob("*.png"):
        Image.open(p).load()
    # stderr closed: a user error still exits 2
    r = closed([2], "config", "--set", "data.image_size=100")
    assert r.returncode == 2 and r.stdout == ""


def test_stderr_reader_gone_during_a_run_lets_it_finish(tiny_run, tmp_path):
    """translate logs to stderr; its reader closes at once: the results are still all written."""
    root, _, run = tiny_run
    out = tmp_path / "out"
    p = subprocess.Popen(CMD + ["-v", "translate", "--run", str(run), "--input", str(root / "data" / "testA"),
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stderr.close()
    stdout = p.stdout.read()
    assert p.wait() == 0, stdout
    assert "translated 3 image(s)" in stdout
    for name in ("A_test_000000.png", "A_test_000002.png"):
        assert Image.open(out / name).size == (32, 32)
