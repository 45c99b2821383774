"""Progress of long work: one redrawn line on a terminal, a bounded number of plain lines elsewhere."""
from __future__ import annotations

import io

from trtcompress import progress
from trtcompress.progress import Progress, configured, note, task


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(stream, steps: int, total: int | None, seconds_per_step: float, **kw) -> Clock:
    clock = Clock()
    with Progress("work", total, unit="batch", stream=stream, clock=clock, **kw) as bar:
        for _ in range(steps):
            clock.t += seconds_per_step
            bar.update(1, loss=0.5)
    return clock


def test_plain_lines_are_bounded_and_say_count_rate_and_eta():
    out = io.StringIO()
    _run(out, 1000, 1000, 0.1)  # 100 s of work, 1000 steps
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # first step, each quarter, every 10 s between them, the end: never one per step
    assert 5 <= len(lines) <= 2 + 3 + 100 / 10, lines
    assert lines[0].startswith("work: 1/1000 batch, 0%, 10.0 batch/s, ETA 1:40")
    assert any(ln.startswith("work: 250/1000 batch, 25%") for ln in lines)
    assert lines[-1] == "work: done, 1000/1000 batch in 1:40 (10.0 batch/s), loss=0.5"


def test_plain_fast_work_prints_two_lines_and_slow_steps_show_seconds_per_step():
    out = io.StringIO()
    _run(out, 100, 100, 0.001)
    assert out.getvalue().splitlines() == ["work: 1/100 batch, 1%, 1000.0 batch/s, ETA 0.1 s, loss=0.5",
                                           "work: done, 100/100 batch in 0.1 s (1000.0 batch/s), loss=0.5"]
    out = io.StringIO()
    _run(out, 3, None, 30.0)  # unknown total: no percent, no ETA; a line every 10 s at most
    lines = out.getvalue().splitlines()
    assert lines[0] == "work: 1 batch, 30.0 s/batch, loss=0.5" and lines[-1] == "work: done, 3 batch in 1:30 (30.0 s/batch), loss=0.5"


def test_failure_before_the_first_step_adds_no_line_and_after_it_says_stopped():
    out = io.StringIO()
    try:
        with Progress("work", 10, stream=out):
            raise ValueError("bad input")
    except ValueError:
        pass
    assert out.getvalue() == ""
    clock = Clock()
    try:
        with Progress("work", 10, stream=out, clock=clock) as bar:
            clock.t = 2.0
            bar.update(1)
            raise ValueError("bad input")
    except ValueError:
        pass
    assert out.getvalue().splitlines()[-1] == "work: stopped at 1/10 step in 2.0 s (2.0 s/step)"


def test_terminal_redraws_one_line_in_place():
    term = Terminal()
    _run(term, 50, 50, 0.05)
    text = term.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once
    frames = text.rstrip("\n").split("\r")[1:]
    # redrawn at most every 0.1 s: start, about every other step, the end
    assert 20 <= len(frames) <= 28, len(frames)
    assert frames[0].startswith("work: 0/50 batch, 0%")
    assert any("ETA" in f and "batch/s" in f for f in frames)
    assert frames[-1].rstrip() == "work: done, 50/50 batch in 2.5 s (20.0 batch/s), loss=0.5"
    # a shorter frame is padded over the longer one before it, so no stale characters stay
    assert all(len(b) >= len(a.rstrip()) for a, b in zip(frames, frames[1:]))


def test_note_clears_the_bar_and_redraws_it():
    term = Terminal()
    with configured(stream=term):
        with Progress("work", 4, stream=term) as bar:
            bar.update(1)
            note("stage 2 of 3")
            bar.update(1)
    text = term.getvalue()
    screen = [ln.split("\r")[-1].rstrip() for ln in text.split("\n")]  # what the terminal shows
    assert screen[0] == "stage 2 of 3" and screen[1].startswith("work: done, 2/4 step") and screen[2:] == [""]
    assert not progress._active


def test_disabled_and_quiet_print_nothing():
    out = io.StringIO()
    _run(out, 10, 10, 1.0, enabled=False)
    with configured(enabled=False, stream=out):
        _run(out, 10, 10, 1.0)
        note("a log line")
        with task("exporting"):
            pass
    assert out.getvalue() == ""


def test_task_prints_start_and_end_with_elapsed_time():
    out = io.StringIO()
    with configured(stream=out):
        with task("exporting net to ONNX"):
            pass
    lines = out.getvalue().splitlines()
    assert lines[0] == "exporting net to ONNX ..." and lines[1].startswith("exporting net to ONNX: done in 0.")


def test_a_bar_left_open_by_an_error_is_ended_before_the_error_line():
    term = Terminal()
    bar = Progress("work", 10, stream=term)  # as a loop that raised past its bar leaves it
    bar.update(1)
    progress.end_all()
    assert not progress._active and term.getvalue().endswith("\n")
    assert term.getvalue().split("\r")[-1].startswith("work: stopped at 1/10 step")


def test_terminal_line_is_cut_to_the_width_so_it_never_wraps(monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    term = Terminal()
    _run(term, 5, 5, 1.0)
    frames = term.getvalue().rstrip("\n").split("\r")[1:]
    assert frames and all(len(f) <= 29 for f in frames)
