"""fastadapt._files, the one writer behind every file the library writes:
symlinks are never followed, concurrent writers and readers only ever see
complete files, an error (KeyboardInterrupt included) leaves the old file and
no temporary file, finished files get the usual permissions. Then the same
guarantees seen through the library's writers (history, diagnosis, plots)."""

import json
import os
import stat
import tempfile
import threading

import numpy as np
import pytest

import fastadapt as fa
from fastadapt import _files
from fastadapt.train.diagnostics import Finding, save_findings
from fastadapt.train.history import History


def _listing(directory):
    return sorted(p.name for p in directory.iterdir())


# ---- symlinks --------------------------------------------------------------------

# The names a hand-rolled "write to a temp file, then rename" would pick.
PREDICTABLE = ["{n}.tmp", ".{n}.tmp", "{n}.partial", ".{n}.partial", "{n}~", "{n}.new", ".{n}.swp"]


def test_symlinks_planted_at_predictable_temp_names_are_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out.json"
    for pattern in PREDICTABLE:
        (tmp_path / pattern.format(n=out.name)).symlink_to(victim)
    _files.write_text(out, "new")
    assert victim.read_text() == "precious"
    assert out.read_text() == "new" and not out.is_symlink()
    for pattern in PREDICTABLE:
        assert (tmp_path / pattern.format(n=out.name)).is_symlink()


@pytest.mark.skipif(not hasattr(tempfile, "_get_candidate_names"), reason="CPython's tempfile internals")
def test_a_symlink_at_the_exact_temp_name_is_skipped_not_followed(tmp_path, monkeypatch):
    # An attacker who could predict the random part: make the first name it
    # tries a planted symlink. O_EXCL refuses it and the next name is used.
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["guessed", "fresh"]))
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / ".out.json.guessed.tmp"
    planted.symlink_to(victim)
    _files.write_text(tmp_path / "out.json", "new")
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert (tmp_path / "out.json").read_text() == "new"
    assert _listing(tmp_path) == [".out.json.guessed.tmp", "out.json", "victim"]


def test_a_target_that_is_a_symlink_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out.json"
    out.symlink_to(victim)
    _files.write_text(out, "new")
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and out.read_text() == "new"


# ---- concurrency -----------------------------------------------------------------

def test_concurrent_writers_and_a_reader_only_ever_see_complete_files(tmp_path):
    path = tmp_path / "shared.bin"
    size = 1 << 18
    path.write_bytes(b"\xff" * size)
    writers, rounds = 4, 15
    start = threading.Barrier(writers + 1)
    done = threading.Event()
    seen, errors = [], []

    def write(k):
        try:
            start.wait()
            for _ in range(rounds):
                with _files.atomic_write(path, "wb") as f:
                    for _ in range(16):  # in pieces, so the writers' calls interleave
                        f.write(bytes([k]) * (size // 16))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read():
        start.wait()
        while not done.is_set():
            data = path.read_bytes()
            seen.append((len(data), len(set(data))))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    reader = threading.Thread(target=read)
    for t in threads + [reader]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert not errors
    final = path.read_bytes()
    assert len(final) == size and len(set(final)) == 1 and final[0] in range(writers)
    assert seen and all(entry == (size, 1) for entry in seen)  # never empty, short or mixed
    assert _listing(tmp_path) == ["shared.bin"]  # every writer's temporary file is gone


# ---- errors ----------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_inside_the_block_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, error):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(type(error)):
        with _files.atomic_write(path, "w", encoding="utf-8") as f:
            f.write("half of the new")
            raise error
    assert path.read_text() == "old"
    assert _listing(tmp_path) == ["out.txt"]


def test_an_error_on_a_new_path_creates_nothing(tmp_path):
    with pytest.raises(ValueError):
        with _files.atomic_write(tmp_path / "new.txt", "w") as f:
            f.write("x")
            raise ValueError("no")
    assert _listing(tmp_path) == []


def test_a_missing_directory_is_an_oserror_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        _files.write_text(tmp_path / "absent" / "out.txt", "x")
    assert _listing(tmp_path) == []


def test_mode_is_checked():
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with _files.atomic_write("x", "a"):
            pass  # pragma: no cover


# ---- permissions -----------------------------------------------------------------

def test_a_finished_file_has_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        _files.write_text(tmp_path / "out.txt", "x")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "out.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == 0o644  # not mkstemp's 0600


def test_text_mode_honours_encoding_and_newline(tmp_path):
    with _files.atomic_write(tmp_path / "t.csv", "w", encoding="utf-8", newline="") as f:
        f.write("é,1\r\n")
    assert (tmp_path / "t.csv").read_bytes() == "é,1\r\n".encode("utf-8")


# ---- check_writable_dir ----------------------------------------------------------

def test_check_writable_dir_creates_checks_and_leaves_no_probe(tmp_path):
    target = tmp_path / "a" / "b"
    assert _files.check_writable_dir(target, "--out") == str(target)
    assert target.is_dir() and _listing(target) == []
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file' exists and is not a directory"):
        _files.check_writable_dir(afile, "--out")
    with pytest.raises(ValueError, match=r"--out .* cannot be written"):
        _files.check_writable_dir(afile / "sub", "--out")
    assert afile.read_text() == "x"


# ---- the library's writers -------------------------------------------------------

def _history(loss=(1.0, 0.5)):
    h = History()
    for epoch, value in enumerate(loss):
        h.append(epoch, {"loss": value})
    return h


def test_history_save_that_fails_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.json"
    _history().save(path)
    before = path.read_bytes()
    broken = _history((3.0,))
    broken.info["config"] = object()  # not JSON data: to_dict raises while the file is being written
    with pytest.raises(TypeError, match="plain data"):
        broken.save(path)
    assert path.read_bytes() == before and _listing(tmp_path) == ["history.json"]
    assert History.load(path) == _history()


def test_save_findings_checks_its_items_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "diagnosis.json"
    save_findings([], path)
    before = path.read_bytes()
    finding = fa.diagnose(_history((1.0, float("nan"))))[0]
    assert isinstance(finding, Finding)
    with pytest.raises(TypeError, match=r"findings\[1\] must be a fastadapt Finding"):
        save_findings([finding, {"code": "plateau"}], path)
    assert path.read_bytes() == before and _listing(tmp_path) == ["diagnosis.json"]


def _broken_savefig(self, fname, *args, **kwargs):
    # Writes part of a file, then fails, as a full disk or a bad option would.
    if hasattr(fname, "write"):
        fname.write(b"\x89PNG half")
    else:
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
    raise RuntimeError("savefig failed")


def test_plots_that_fail_keep_the_old_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from fastadapt.train.plotting import plot_history

    history_png, lr_png = tmp_path / "history.png", tmp_path / "lr_find.png"
    plot_history(_history(), history_png)
    result = fa.lr_find(fa.SGD(), {"w": np.zeros(1)}, lambda p, b: (1.0, {"w": np.zeros(1)}), [None],
                        num_steps=10)
    result.plot(str(lr_png))
    before = {p: p.read_bytes() for p in (history_png, lr_png)}
    assert all(data[:4] == b"\x89PNG" for data in before.values())
    monkeypatch.setattr(Figure, "savefig", _broken_savefig)
    with pytest.raises(RuntimeError, match="savefig failed"):
        plot_history(_history(), history_png)
    with pytest.raises(RuntimeError, match="savefig failed"):
        result.plot(str(lr_png))
    assert {p: p.read_bytes() for p in before} == before
    assert _listing(tmp_path) == ["history.png", "lr_find.png"]


def _no_raw_chain(err):
    """The error is the whole story: no raw gzip/zlib/json error chained to it."""
    return err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


# ---- reading history files -------------------------------------------------------

def _saved(tmp_path, **changes):
    data = _history().to_dict()
    data.update(changes)
    path = tmp_path / "history.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("version", [1.0, True, "1", None, 2])
def test_history_version_must_be_exactly_the_int_1(tmp_path, version):
    # 1.0 == 1 and True == 1 in Python; neither is what History.save writes.
    path = _saved(tmp_path, version=version)
    with pytest.raises(ValueError, match=rf"history file .*history.json.*version {version!r}"):
        History.load(path)
    with pytest.raises(ValueError, match="version"):
        History.from_dict(_history().to_dict() | {"version": version})
    assert History.load(_saved(tmp_path, version=1)) == _history()


@pytest.mark.parametrize("content, what", [
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b'{"format": "fastadapt.history", "version": 1, "epoch": [0', "is not valid JSON"),
    (b"not json at all", "is not valid JSON"),
    (b"\xff\xfe{}", "is not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nests JSON too deeply"),
    (b"[1, 2]", "expected a dict"),
    (b'{"format": "fastadapt.history", "version": 1, "epoch": [0], "history": {"loss": [{}]}}', "real numbers"),
    (b'{"format": "fastadapt.history", "version": 1, "epoch": [0, 1], "history": {"loss": [1]}}',
     "one value per epoch"),
    (b'{"format": "fastadapt.history", "version": 1, "epoch": "0", "history": {}}', "list of ints"),
])
def test_a_bad_history_file_is_one_valueerror_naming_it(tmp_path, content, what):
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=what) as info:
        History.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert _no_raw_chain(info.value)  # no chained raw error
    assert path.read_bytes() == content
    with pytest.raises(ValueError, match=what):  # the same through fa.diagnose(path)
        fa.diagnose(str(path))


def test_a_missing_history_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        History.load(tmp_path / "absent.json")
