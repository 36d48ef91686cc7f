"""Hardening of fastadapt.tune (issue 11): a tuner checkpoint that is JSON
and never unpickled, refused cleanly when damaged; files written through the
shared safe writer; nested search spaces; non-finite metrics and bounds;
unpicklable states; trials that hang (trial_timeout); CLI user errors."""

import json
import math
import os
import pickle
import re
import threading
import time

import numpy as np
import pytest

import fastadapt as fa
from fastadapt.tune import state as tune_state
from fastadapt.tune.executors import ProcessExecutor
from fastadapt.tune.state import CheckpointStore

import tune_helpers as H

T = fa.tune
SPACE = {"x": T.uniform(0.0, 1.0)}




def hyperband(**kwargs):
    return T.Hyperband(H.Quadratic, SPACE, max_resource=9, eta=3, seed=5, executor="sequential", **kwargs)


def snapshot(directory):
    """Every file under ``directory`` with its bytes: "nothing changed" is this, equal."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


@pytest.fixture
def interrupted(tmp_path):
    """A checkpoint of a Hyperband run stopped after 7 results, with live state files."""
    with pytest.raises(H.Interrupt):
        hyperband(checkpoint_dir=tmp_path, on_result=H.interrupt_after(7)).run()
    assert len(os.listdir(tmp_path / "states")) >= 2
    return tmp_path


# ---- 1. the tuner's state is JSON, and resuming never unpickles it ------------------------
def test_the_tuner_checkpoint_is_json_and_only_states_are_unpickled(interrupted, monkeypatch):
    assert sorted(os.listdir(interrupted)) == ["states", "tuner.json"]
    document = json.loads((interrupted / "tuner.json").read_text())
    assert document["format"] == "fastadapt.tune" and document["version"] == 1
    # Random streams are their bit_generator.state dicts: plain data.
    assert document["fields"]["_sample_rng"]["$rng"]["bit_generator"] == "PCG64"
    unpickled = []

    class RecordingUnpickler(tune_state._StateUnpickler):  # the one unpickler a resume may use
        def __init__(self, f, *args, **kwargs):
            unpickled.append(os.path.relpath(f.name, interrupted))
            super().__init__(f, *args, **kwargs)

    monkeypatch.setattr(tune_state, "_StateUnpickler", RecordingUnpickler)
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called on resume"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called on resume"))
    resumed = hyperband(checkpoint_dir=interrupted, resume=True)
    resumed.prepare()
    assert unpickled and all(name.startswith("states" + os.sep) for name in unpickled)


class _RunsCode:
    """A pickle that calls os.makedirs(marker) when loaded: what a hostile checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_a_pickled_tuner_file_is_never_loaded(tmp_path):
    marker = str(tmp_path / "code-ran")
    payload = pickle.dumps(_RunsCode(marker))
    # Planted both where older versions kept the tuner (tuner.pkl) and where it is now.
    (tmp_path / "tuner.pkl").write_bytes(payload)
    with pytest.raises(ValueError, match="tuner.pkl is a checkpoint of an older fastadapt.*never loads it"):
        hyperband(checkpoint_dir=tmp_path, resume="auto").run()
    (tmp_path / "tuner.json").write_bytes(payload)
    with pytest.raises(ValueError, match="tuner.json is not valid JSON"):
        hyperband(checkpoint_dir=tmp_path, resume=True).run()
    assert not os.path.exists(marker)


# ---- 2. a damaged tuner file is one ValueError, and nothing changes ------------------------
def _damaged(valid):
    document = json.loads(valid)
    versions = {}
    for label, version in [("float", 1.0), ("bool", True), ("two", 2), ("string", "1")]:
        versions[label] = json.dumps({**document, "version": version})
    fields = document["fields"]
    bad_trials = json.dumps({**document, "fields": {**fields, "_trials": 5}})
    no_rng = json.dumps({**document, "fields": {k: v for k, v in fields.items() if k != "_sample_rng"}})
    bad_rng = valid.replace('"PCG64"', '"os.system"', 1)
    in_flight = json.dumps({**document, "fields": {**fields, "_in_flight": {"$dict": [[999, 1]]}}})
    return [
        ("empty", "", "is empty"),
        ("blank", "  \n", "is empty"),
        ("truncated", valid[: len(valid) // 2], "is not valid JSON"),
        ("binary", "\udcff\x00garbage", "is not valid JSON"),
        ("not-json", "format = fastadapt.tune", "is not valid JSON"),
        ("deeply-nested", "[" * 100000 + "]" * 100000, "nested too deeply"),
        ("a-list", "[1, 2, 3]", "is not a fastadapt tuner checkpoint"),
        ("wrong-format", json.dumps({**document, "format": "other"}), "is not a fastadapt tuner checkpoint"),
        ("version-1.0", versions["float"], "has checkpoint version 1.0; this fastadapt reads version 1"),
        ("version-true", versions["bool"], "has checkpoint version True; this fastadapt reads version 1"),
        ("version-2", versions["two"], "has checkpoint version 2"),
        ("version-string", versions["string"], "has checkpoint version '1'"),
        ("bad-trials", bad_trials, r"is not valid: .*_trials.* must be a dict"),
        ("missing-field", no_rng, r"is not valid: .*lacks '_sample_rng'"),
        ("unknown-rng", bad_rng, "holds a value that is not valid: .*bit generator 'os.system'"),
        ("dangling-trial", in_flight, r"is not valid: _in_flight names trials \[999\]"),
    ]


def test_damaged_tuner_files_are_one_value_error_and_change_nothing(interrupted):
    path = interrupted / "tuner.json"
    valid = path.read_text()
    for label, text, message in _damaged(valid):
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        before = snapshot(interrupted)
        tuner = hyperband(checkpoint_dir=interrupted, resume=True)
        attributes = dict(vars(tuner))
        with pytest.raises(ValueError) as caught:
            tuner.run()
        assert str(path) in str(caught.value), label
        assert re.search(message, str(caught.value)), (label, str(caught.value))
        assert snapshot(interrupted) == before, label           # no state file deleted, nothing rewritten
        assert vars(tuner) == attributes, label                 # the tuner is as it was
    path.write_text(valid)                                      # the intact file still resumes
    assert hyperband(checkpoint_dir=interrupted, resume=True).run().table() == hyperband().run().table()


@pytest.mark.parametrize("damage, message", [
    (os.remove, "names the state file .*trial-.*, which is missing"),
    (lambda p: os.truncate(p, 5), "the state file .*trial-.* cannot be unpickled"),
])
def test_a_missing_or_damaged_state_file_is_a_value_error_naming_it(interrupted, damage, message):
    name = sorted(os.listdir(interrupted / "states"))[0]
    damage(str(interrupted / "states" / name))
    before = snapshot(interrupted)
    tuner = hyperband(checkpoint_dir=interrupted, resume=True)
    attributes = dict(vars(tuner))
    with pytest.raises(ValueError, match=message) as caught:
        tuner.run()
    assert name in str(caught.value)
    assert snapshot(interrupted) == before and vars(tuner) == attributes


def test_the_json_codec_gives_back_what_the_tuner_stores():
    rng = np.random.default_rng(3)
    rng.random(5)
    value = {1: (0.1, -0.0, float("inf"), float("-inf")), "best": {2, 3}, "$x": b"\x00\xff",
             "nested": {"a": [None, True, "s", 2 ** 80]}, "np": [np.float32(0.5), np.int64(7)],
             "array": np.arange(6, dtype=np.int16).reshape(2, 3), "rng": rng, "frozen": frozenset({"a"})}
    text = json.dumps(tune_state.encode(value), allow_nan=False)
    back = tune_state.decode(json.loads(text))
    assert back.keys() == value.keys() and back[1] == value[1] and back["best"] == {2, 3}
    assert back["$x"] == b"\x00\xff" and back["nested"] == value["nested"] and back["frozen"] == frozenset({"a"})
    assert [type(v) for v in back["np"]] == [np.float32, np.int64] and back["np"] == value["np"]
    assert back["array"].dtype == np.int16 and np.array_equal(back["array"], value["array"])
    assert back["rng"].random() == rng.random()                 # the stream continues bit for bit
    assert math.isnan(tune_state.decode(json.loads(json.dumps(tune_state.encode(float("nan"))))))
    with pytest.raises(TypeError, match="cannot be stored in JSON"):
        tune_state.encode({"f": len})
    with pytest.raises(TypeError, match="dtype object cannot be stored without pickle"):
        tune_state.encode(np.array([{}], dtype=object))
    with pytest.raises(ValueError, match="unknown tagged value"):
        tune_state.decode({"$eval": "1"})


def test_a_checkpoint_refuses_config_values_json_cannot_hold_at_construction(tmp_path):
    with pytest.raises(TypeError, match=r"space\['act'\] = <built-in function len> cannot be stored.*never pickle"):
        T.Hyperband(H.Quadratic, {**SPACE, "act": len}, max_resource=9, checkpoint_dir=tmp_path)
    with pytest.raises(TypeError, match=r"space\['act'\] choice 1 = .* cannot be stored"):
        T.Hyperband(H.Quadratic, {**SPACE, "act": T.choice(["relu", len])}, max_resource=9, checkpoint_dir=tmp_path)
    assert not os.listdir(tmp_path)
    # Without a checkpoint nothing is stored, and any constant is fine.
    T.Hyperband(H.Quadratic, {**SPACE, "act": len}, max_resource=9)


# ---- 3. every file goes through the shared safe writer ----------------------------------------
def test_planted_partial_symlinks_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ck, out = tmp_path / "ck", tmp_path / "out"
    (ck / "states").mkdir(parents=True)
    out.mkdir()
    # Where the old writer put its temporary files: <target>.partial, opened without O_EXCL.
    planted = [ck / "tuner.pkl.partial", ck / "tuner.json.partial", out / "r.json.partial", out / "r.csv.partial"]
    planted += [ck / "states" / f"trial-{k}-v{v}.pkl.partial" for k in (*range(13), "best") for v in range(1, 5)]
    for link in planted:
        os.symlink(victim, link)
    result = hyperband(checkpoint_dir=ck).run()
    result.to_json(out / "r.json")
    result.to_csv(out / "r.csv")
    assert victim.read_text() == "precious"
    assert all(os.path.islink(link) for link in planted)        # left alone, not renamed over the targets
    assert json.loads((out / "r.json").read_text())["algorithm"] == "hyperband"
    assert json.loads((ck / "tuner.json").read_text())["format"] == "fastadapt.tune"


def test_a_plot_that_fails_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    result = hyperband().run()
    target = tmp_path / "hb.png"
    result.plot(target)
    before = target.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    def fails_half_way(self, fname, **kwargs):
        # Half a file, then the disk fills: written to whatever savefig was given (a path or a file).
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            with open(fname, "wb") as f:
                f.write(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", fails_half_way)
    with pytest.raises(OSError, match="No space left"):
        result.plot(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["hb.png"]                   # no temporary file left behind


def test_concurrent_writers_on_one_path_leave_a_readable_file(tmp_path):
    store = CheckpointStore(tmp_path)
    result = hyperband().run()
    errors = []

    def writer(k):
        try:
            for i in range(40):
                store.save({"writer": k, "i": i, "pad": "x" * (1000 * k)}, {})
                result.to_json(tmp_path / "result.json")
        except Exception as err:  # collected: an exception in a thread would otherwise pass unseen
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    document = store.load()
    assert document["i"] == 39 and document["pad"] == "x" * (1000 * document["writer"])
    assert json.loads((tmp_path / "result.json").read_text()) == result.to_dict()
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []   # no temporary file left


# ---- 4. nested search spaces --------------------------------------------------------------
def test_a_nested_dict_of_domains_is_a_nested_config(tmp_path):
    space = {"optim": {"x": T.uniform(0.0, 1.0), "momentum": 0.9}, "depth": T.randint(1, 4)}
    config = T.sample_config(space, np.random.default_rng(0))
    assert set(config) == {"optim", "depth"} and config["optim"]["momentum"] == 0.9
    assert isinstance(config["optim"]["x"], float) and 0 <= config["optim"]["x"] <= 1
    result = T.SuccessiveHalving(H.NestedConfig, space, num_trials=9, max_resource=9, seed=0,
                                 executor="sequential", checkpoint_dir=tmp_path).run()
    assert result.count("failed") == 0 and result.best_config["optim"]["momentum"] == 0.9
    assert result.space["optim/x"] == "uniform(0.0, 1.0)"
    # PBT explores a nested hyperparameter by its "/" name, and resume reads it back from JSON.
    pbt = dict(population=4, perturbation_interval=2, max_resource=6, seed=1, executor="sequential",
               mutations=["optim/x"], resample_probability=0.0)
    reference = T.PBT(H.NestedConfig, space, **pbt).run()
    assert reference.lineage and all(set(e["changes"]) <= {"optim/x", "depth"} for e in reference.lineage)
    assert all(0 <= t.config["optim"]["x"] <= 1 for t in reference.trials)
    with pytest.raises(H.Interrupt):
        T.PBT(H.NestedConfig, space, checkpoint_dir=tmp_path / "pbt", on_result=H.interrupt_after(5), **pbt).run()
    resumed = T.PBT(H.NestedConfig, space, checkpoint_dir=tmp_path / "pbt", resume=True, **pbt).run()
    assert resumed.table() == reference.table() and resumed.lineage == reference.lineage
    with pytest.raises(ValueError, match=r"mutations names \['optim'\]"):
        T.PBT(H.NestedConfig, space, population=4, perturbation_interval=2, mutations=["optim"])


@pytest.mark.parametrize("space, error, message", [
    ({"layers": [T.uniform(0, 1), 3]}, ValueError, r"space\['layers'\] holds a domain inside a list"),
    ({"a": {"b": (T.choice([1, 2]),)}}, ValueError, r"space\['a'\]\['b'\] holds a domain inside a tuple"),
    ({"a": {1: T.uniform(0, 1)}}, TypeError, r"space keys must be non-empty strings.*in space\['a'\]"),
    ({"a": {"b": T.uniform(0, 1)}, "a/b": T.uniform(0, 1)}, ValueError, "two hyperparameters named 'a/b'"),
    ({"a": {"b": 1}}, ValueError, "no domain to search"),
])
def test_domains_nested_where_they_cannot_be_sampled_are_refused(space, error, message):
    with pytest.raises(error, match=message):
        T.Hyperband(H.Quadratic, space, max_resource=9)


def test_a_choice_holding_a_domain_outside_a_dict_is_refused_but_dicts_are_branches():
    with pytest.raises(TypeError, match="choice values must be plain values or dicts .*got a domain in value 1"):
        T.choice([0.1, [T.uniform(0, 1)]])
    with pytest.raises(ValueError, match=r"choice value 1\['lr'\] holds a domain inside a list"):
        T.choice([{"lr": 0.1}, {"lr": [T.uniform(0, 1)]}])
    assert T.choice([{"lr": 0.1}, {"lr": 0.2}]).sample(np.random.default_rng(0)) in ({"lr": 0.1}, {"lr": 0.2})
    # a branch's domain is sampled (conditional spaces): the trainable never receives a Domain
    drawn = [T.choice([{"lr": 0.1}, {"lr": T.uniform(0, 1)}]).sample(np.random.default_rng(s)) for s in range(8)]
    assert all(isinstance(d["lr"], float) for d in drawn) and len({d["lr"] for d in drawn}) > 2


def test_initial_configs_nest_like_the_space():
    space = {"optim": {"x": T.uniform(0.0, 1.0)}}
    tuner = T.SuccessiveHalving(H.NestedConfig, space, num_trials=3, max_resource=3, seed=0, executor="sequential",
                                initial_configs=[{"optim": {"x": 0.3}}])
    assert tuner.run().trial(0).config == {"optim": {"x": 0.3}}
    with pytest.raises(ValueError, match=r"initial_configs\[0\]\['optim'\] has keys \['y'\]"):
        T.SuccessiveHalving(H.NestedConfig, space, num_trials=3, max_resource=3, initial_configs=[{"optim": {"y": 1}}])
    with pytest.raises(ValueError, match=r"initial_configs\[0\]\['optim'\]\['x'\] = 2 is outside"):
        T.SuccessiveHalving(H.NestedConfig, space, num_trials=3, max_resource=3, initial_configs=[{"optim": {"x": 2}}])


# ---- 5. non-finite metrics fail their trial -------------------------------------------------
@pytest.mark.parametrize("mode, sign", [("min", -1), ("max", 1)])
def test_an_infinite_metric_fails_its_trial_and_never_wins(mode, sign):
    space = {"x": T.uniform(0.0, 1.0), "sign": sign}
    result = T.SuccessiveHalving(H.infinite_above_half, space, num_trials=9, max_resource=9, mode=mode, seed=0,
                                 executor="sequential").run()
    diverged = [t for t in result.trials if t.config["x"] > 0.5]
    assert diverged and all(t.status == "failed" for t in diverged)
    assert all("reported a non-finite metric" in t.error and f"trial {t.trial_id}" in t.error for t in diverged)
    assert all(t.history[-1]["metric"] == sign * math.inf for t in diverged)   # the evaluation is kept
    assert math.isfinite(result.best_metric) and result.best_config["x"] <= 0.5
    assert result.count("failed") == len(diverged)


def test_a_nan_metric_fails_its_trial_too():
    result = T.SuccessiveHalving(H.nan_above_half, SPACE, num_trials=9, max_resource=9, seed=0,
                                 executor="sequential").run()
    nan_trials = [t for t in result.trials if t.config["x"] > 0.5]
    assert nan_trials and all(t.status == "failed" and "non-finite metric (nan)" in t.error for t in nan_trials)


# ---- 6. domains whose samples would not be finite -------------------------------------------
@pytest.mark.parametrize("build, message", [
    (lambda: T.uniform(-1e308, 1e308), r"uniform\(low=-1e\+308, high=1e\+308\): high - low overflows"),
    (lambda: T.uniform(-1.7e308, 1.7e308), r"uniform\(low=-1.7e\+308, high=1.7e\+308\)"),
    (lambda: T.randint(0, 2 ** 63), r"randint\(low=0, high=9223372036854775808\): high must be <= 2\*\*62"),
    (lambda: T.choice([1.0, float("nan")]), "choice values must be finite numbers, got nan at index 1"),
    (lambda: T.choice([float("inf")]), "choice values must be finite numbers, got inf at index 0"),
])
def test_domains_that_would_sample_non_finite_values_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_huge_but_finite_ranges_sample_and_reflect_finite_values():
    wide = T.uniform(-8e307, 8e307)
    rng = np.random.default_rng(0)
    assert all(math.isfinite(wide.sample(rng)) for _ in range(100))
    top = T.uniform(1e308, 1.5e308)
    # 2 * high overflows: the reflection must still land inside, not on NaN.
    assert top.project(float("inf"), "reflect") == 1.5e308
    assert top.contains(top.perturb(1.4e308, 1.2, rng, "reflect"))
    assert T.loguniform(1e-300, 1e300).contains(T.loguniform(1e-300, 1e300).sample(rng))


# ---- 7. an unpicklable save() fails its trial on every executor -----------------------------
@pytest.mark.parametrize("executor", ["sequential", "sequential+checkpoint", "process"])
def test_an_unpicklable_state_fails_its_trial(tmp_path, executor):
    kwargs = {"executor": ProcessExecutor(max_workers=2) if executor == "process" else "sequential"}
    if executor.endswith("checkpoint"):
        kwargs["checkpoint_dir"] = tmp_path
    result = T.SuccessiveHalving(H.UnpicklableState, SPACE, num_trials=9, max_resource=9, seed=0, **kwargs).run()
    bad = [t for t in result.trials if t.config["x"] > 0.5]
    assert bad and all(t.status == "failed" for t in bad)
    for t in bad:
        assert f"trial {t.trial_id}: save() returned a state that cannot be pickled" in t.error
        assert "cannot pickle '_thread.lock' object" in t.error
    assert all(t.status != "failed" for t in result.trials if t.config["x"] <= 0.5)


# ---- 8. trial_timeout ---------------------------------------------------------------------
@pytest.mark.parametrize("executor", ["sequential", "process"])
def test_a_trial_past_trial_timeout_fails_and_the_run_goes_on(executor):
    space = {"x": T.uniform(0.0, 1.0), "how": "hang"}         # x > 0.5 sleeps an hour
    started = time.monotonic()
    result = T.SuccessiveHalving(H.Misbehaves, space, num_trials=3, max_resource=3, eta=3, seed=1,
                                 trial_timeout=0.5,
                                 executor=ProcessExecutor(max_workers=2) if executor == "process" else executor).run()
    hung = [t for t in result.trials if t.config["x"] > 0.5]
    assert hung and result.count("failed") == len(hung)
    for t in hung:
        assert t.status == "failed" and t.error.startswith(f"trial {t.trial_id} ran past trial_timeout=0.5 s")
    assert result.best_config["x"] <= 0.5
    assert time.monotonic() - started < 600                     # very loose: the hung jobs sleep for an hour


@pytest.mark.parametrize("make", [
    lambda **kw: T.Hyperband(H.Misbehaves, {**SPACE, "how": "hang"}, max_resource=3, seed=1, **kw),
    lambda **kw: T.ASHA(H.Misbehaves, {**SPACE, "how": "hang"}, num_trials=4, max_resource=3, seed=1, **kw),
    lambda **kw: T.PBT(H.Misbehaves, {**SPACE, "how": "hang"}, population=3, perturbation_interval=1,
                       max_resource=2, seed=1, exploit=False, explore=False, **kw),
], ids=["hyperband", "asha", "pbt"])
def test_every_tuner_takes_trial_timeout(make):
    result = make(executor="sequential", trial_timeout=0.3).run()
    hung = [t for t in result.trials if t.config["x"] > 0.5]
    assert hung and all("ran past trial_timeout=0.3 s" in t.error for t in hung)
    assert all(t.status != "failed" for t in result.trials if t.config["x"] <= 0.5)


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "trial_timeout=0 must be > 0"),
    (-1.0, ValueError, "trial_timeout=-1.0 must be > 0"),
    (float("nan"), ValueError, "trial_timeout=nan must be finite"),
    (float("inf"), ValueError, "trial_timeout=inf must be finite"),
    (True, TypeError, "trial_timeout=True must be a real number"),
    ("5", TypeError, "trial_timeout='5' must be a real number"),
])
def test_bad_trial_timeouts_are_refused(value, error, message):
    for make in (lambda: T.SuccessiveHalving(H.Quadratic, SPACE, num_trials=3, max_resource=3, trial_timeout=value),
                 lambda: T.PBT(H.Quadratic, SPACE, population=2, perturbation_interval=1, trial_timeout=value)):
        with pytest.raises(error, match=message):
            make()


# ---- 9. CLI user errors: one line on stderr, exit status 2, before any trial runs --------------
def _out_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file", "exists and is not a directory"


def _out_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "x", "cannot be written: Not a directory"


def _checkpoint_is_a_file(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoint").write_text("x")
    return tmp_path / "out", "checkpoint directory .* exists and is not a directory"


@pytest.mark.parametrize("make_out", [_out_is_a_file, _out_under_a_file, _checkpoint_is_a_file])
def test_tune_cli_refuses_an_unusable_out_before_any_trial(mnist_subset, tmp_path, capsys, make_out):
    from fastadapt.cli import main

    out, message = make_out(tmp_path)
    before = snapshot(tmp_path)
    assert main(["tune", "hyperband", "--out", str(out), "--max-resource", "3", "--hidden", "8",
                 "--train-samples", "200", "--executor", "sequential"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("fastadapt tune hyperband: --out") and re.search(message, err), err
    assert snapshot(tmp_path) == before                         # no trial ran, nothing was written


def test_tune_cli_refuses_a_damaged_checkpoint_and_a_bad_trial_timeout(mnist_subset, tmp_path, capsys):
    from fastadapt.cli import main

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "tuner.json").write_text('{"format": "fastadapt.tune", "version": 1.0}')
    args = ["tune", "hyperband", "--out", str(tmp_path), "--max-resource", "3", "--hidden", "8",
            "--train-samples", "200", "--executor", "sequential"]
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "has checkpoint version 1.0" in err and "tuner.json" in err
    assert main(args + ["--trial-timeout", "0"]) == 2
    assert "--trial-timeout 0.0 must be > 0" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]


def test_a_checkpoint_dir_that_cannot_take_files_is_refused_before_any_trial(tmp_path):
    (tmp_path / "file").write_text("x")
    H.CALLS.clear()
    for directory, message in [(tmp_path / "file", "exists and is not a directory"),
                               (tmp_path / "file" / "ck", "cannot be written")]:
        with pytest.raises(ValueError, match=f"checkpoint_dir '.*' {message}"):
            hyperband(checkpoint_dir=directory).run()
    assert H.CALLS == [] and sorted(os.listdir(tmp_path)) == ["file"]


def test_a_state_pickled_before_the_package_had_folders_still_resumes(tmp_path):
    # What a trainable's save() may return, pickled when fastadapt's modules were flat: the classes are named
    # by their old paths (fastadapt.history, fastadapt.controllers, fastadapt.callback_library.csv_logger, ...).
    state = {"history": fa.History(), "plateau": fa.ReduceLROnPlateau(patience=3), "stop": fa.EarlyStopping(),
             "log": fa.CSVLogger(str(tmp_path / "log.csv")), "batches": fa.batches(np.zeros((4, 1)), np.zeros(4), 2)}
    flat = pickle.dumps(state, protocol=2)  # protocol 2 names a class as the text "c<module>\n<name>\n"
    for new, old in [(b"fastadapt.train.history", b"fastadapt.history"),
                     (b"fastadapt.schedules._plateau", b"fastadapt.controllers"),
                     (b"fastadapt.schedules.reduce_lr_on_plateau", b"fastadapt.controllers"),
                     (b"fastadapt.schedules.early_stopping", b"fastadapt.controllers"),
                     (b"fastadapt.train.callbacks.csv_logger", b"fastadapt.callback_library.csv_logger"),
                     (b"fastadapt.data.batching", b"fastadapt.batching")]:
        assert b"c" + new + b"\n" in flat
        flat = flat.replace(b"c" + new + b"\n", b"c" + old + b"\n")
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(flat)  # those modules are gone
    store = CheckpointStore(tmp_path)
    os.makedirs(tmp_path / "states")
    (tmp_path / "states" / "trial-7-v1.pkl").write_bytes(flat)
    loaded = store.read_state(7, 1)
    assert {k: type(v) for k, v in loaded.items()} == {k: type(v) for k, v in state.items()}
    assert loaded["plateau"]._plateau.patience == 3 and loaded["plateau"].state_dict() == state["plateau"].state_dict()


# ---- what a user of Optuna or Ray Tune expects when things go wrong ----------------------------------------
def test_a_run_where_every_trial_failed_warns_with_the_first_error():
    with pytest.warns(RuntimeWarning, match=r"every trial failed \(17 of 17\).*Trial 0: KeyError: .*'metric'"):
        result = T.Hyperband(lambda c, b: {"loss": 1.0}, SPACE, max_resource=9, seed=0, executor="sequential",
                             progress=False).run()
    assert result.best_config is None and all(t.status == "failed" for t in result.trials)


def test_result_gives_the_trials_finished_before_an_exception_stopped_the_run():
    tuner = hyperband(on_result=H.interrupt_after(7), progress=False)
    with pytest.raises(H.Interrupt):
        tuner.run()
    partial = tuner.result()
    assert sum(len(t.history) for t in partial.trials) == 7 and partial.best_metric is not None
    assert partial.best_metric == min(h["metric"] for t in partial.trials for h in t.history)


def test_a_keyboard_interrupt_raised_by_a_trainable_in_a_worker_fails_that_trial_alone():
    result = T.SuccessiveHalving(H.keyboard_interrupt_above_half, SPACE, max_resource=9, num_trials=9, seed=0,
                                 progress=False, executor=ProcessExecutor(max_workers=2)).run()
    failed = [t for t in result.trials if t.status == "failed"]
    assert failed and all(t.config["x"] > 0.5 for t in failed)
    assert all(t.retries == 0 and t.error.strip().endswith("KeyboardInterrupt") for t in failed)
    assert all(t.status != "failed" for t in result.trials if t.config["x"] <= 0.5)


@pytest.mark.parametrize("cls", [T.PBT, T.PB2])
def test_pbt_refuses_an_interval_that_never_perturbs_and_names_itself(cls):
    with pytest.raises(ValueError, match=rf"perturbation_interval=10 >= max_resource=3: .* {cls.__name__} would be "
                                         r"a random search"):
        cls(H.Quadratic, SPACE, population=4, perturbation_interval=10, max_resource=3)
    with pytest.raises(TypeError, match=rf"{cls.__name__} continues and copies members' states"):
        cls(H.quadratic_function, SPACE, population=4, perturbation_interval=1)


def test_sample_config_takes_a_seed_or_a_generator():
    assert T.sample_config(SPACE, 3) == T.sample_config(SPACE, np.random.default_rng(3))
    with pytest.raises(TypeError, match="rng must be a np.random.Generator or an int seed"):
        T.sample_config(SPACE, "3")


def test_table_and_csv_flatten_nested_and_conditional_configs():
    space = {"opt": T.choice([{"name": "sgd", "mom": T.uniform(0, 1)}, {"name": "adam", "b2": T.uniform(0.9, 0.99)}]),
             "nest": {"a": T.uniform(0, 1)}}
    result = T.Search(lambda c, b: c["nest"]["a"], space, num_trials=12, max_resource=1, seed=0,
                      executor="sequential", progress=False).run()
    rows = result.table()
    assert {"config.opt/name", "config.opt/mom", "config.opt/b2", "config.nest/a"} <= set(rows[0])
    assert not any(isinstance(v, dict) for row in rows for v in row.values())
    for row, trial in zip(rows, result.trials):
        assert row["config.nest/a"] == trial.config["nest"]["a"]
        other = "config.opt/b2" if trial.config["opt"]["name"] == "sgd" else "config.opt/mom"
        assert row[other] is None   # the branch it did not take
    header = result.to_csv().splitlines()[0].split(",")
    assert "config.opt/name" in header and "config.opt" not in header


def test_a_result_written_to_json_reads_back_whole(tmp_path):
    pbt = T.PBT(H.Quadratic, SPACE, population=4, perturbation_interval=2, max_resource=6, seed=1,
                executor="sequential", progress=False).run()
    with pytest.warns(RuntimeWarning):   # every trial failed: a result with errors and no best
        failed = T.Hyperband(lambda c, b: {"loss": 1.0}, SPACE, max_resource=3, seed=0, executor="sequential",
                             progress=False).run()
    for result in (pbt, failed):
        result.to_json(tmp_path / "r.json")
        back = T.TuneResult.from_json(tmp_path / "r.json")
        assert back.to_dict() == result.to_dict() and back.table() == result.table()
        assert back.best_config == result.best_config and back.best_state is None
    (tmp_path / "bad.json").write_text('{"algorithm": "pbt"}')
    with pytest.raises(ValueError, match=r"bad.json is not a tuning result written by TuneResult.to_json: the "
                                         r"file has no 'trials'"):
        T.TuneResult.from_json(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError, match="is not a tuning result"):
        T.TuneResult.from_json(tmp_path / "bad.json")
    pytest.importorskip("matplotlib")
    pbt.to_json(tmp_path / "pbt.json")
    T.TuneResult.from_json(tmp_path / "pbt.json").plot(tmp_path / "pbt.png")   # the lineage plots as before
    assert (tmp_path / "pbt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_reported_entry_named_like_the_history_fields_fails_the_trial_clearly():
    def clashes(config, budget):
        return {"score": config["x"], "budget": 1234.0}
    with pytest.warns(RuntimeWarning, match="every trial failed"):
        result = T.Search(clashes, SPACE, metric="score", num_trials=2, max_resource=1, seed=0,
                          executor="sequential", progress=False).run()
    assert "train() returned 'budget' besides the tuner's metric 'score'" in result.trials[0].error
    kept = T.Search(lambda c, b: {"score": c["x"], "other": 2.0}, SPACE, metric="score", num_trials=2,
                    max_resource=1, seed=0, executor="sequential", progress=False).run()
    assert kept.trials[0].history[0] == {"budget": 1, "metric": kept.trials[0].config["x"], "other": 2.0}


def test_an_initial_config_may_give_part_of_a_conditional_branch():
    space = {"lr": T.loguniform(1e-3, 1.0),
             "opt": T.choice([{"name": "sgd", "mom": T.uniform(0, 1)}, {"name": "adam", "b2": T.uniform(0.9, 0.99)}])}
    result = T.Search(lambda c, b: c["lr"], space, num_trials=3, max_resource=1, seed=0, executor="sequential",
                      progress=False, initial_configs=[{"opt": {"name": "adam"}}, {"opt": {"mom": 0.5}}]).run()
    first, second = result.trials[0].config["opt"], result.trials[1].config["opt"]
    assert first["name"] == "adam" and 0.9 <= first["b2"] <= 0.99 and set(first) == {"name", "b2"}
    assert second == {"name": "sgd", "mom": 0.5}
    for bad in ({"name": "rms"}, {"b2": 2.0}):
        with pytest.raises(ValueError, match=r"initial_configs\[0\]\['opt'\] = .* is outside its domain"):
            T.Search(lambda c, b: c["lr"], space, num_trials=3, max_resource=1, initial_configs=[{"opt": bad}])
    # sample_config says which branches a partial dict matches
    with pytest.raises(ValueError, match="is part of no branch"):
        T.sample_config(space, 0, {"opt": {"name": "rms"}})


def test_hyperband_takes_a_min_resource_as_optunas_pruner():
    assert T.hyperband_schedule(81, 3, 9) == [[(9, 9), (3, 27), (1, 81)], [(5, 27), (1, 81)], [(3, 81)]]
    assert T.hyperband_schedule(81, 3, 1) == T.hyperband_schedule(81, 3)
    result = T.Hyperband(H.quadratic_function, SPACE, max_resource=27, min_resource=3, seed=0,
                         executor="sequential", progress=False).run()
    assert sorted({h["budget"] for t in result.trials for h in t.history}) == [3, 9, 27]
    assert result.settings["min_resource"] == 3
    assert "min_resource" not in hyperband(progress=False).settings()   # (default: checkpoints stay as they were)
    with pytest.raises(ValueError, match=r"min_resource \(30\) must be <= max_resource \(27\)"):
        T.Hyperband(H.quadratic_function, SPACE, max_resource=27, min_resource=30)


# ---- ask / tell (trainable=None), as Optuna's study.ask() / study.tell() ------------------------------------
def _drive(tuner, objective, batch=1):
    """Ask up to ``batch`` jobs, tell them all, until the run is over; the jobs in order."""
    jobs = []
    while not tuner.done:
        asked = []
        for _ in range(batch):
            job = tuner.ask()
            if job is None:
                break
            asked.append(job)
        if not asked:
            break
        for job in asked:
            tuner.tell(job, objective(job.config, job.total))
        jobs += asked
    return jobs


@pytest.mark.parametrize("make", [
    lambda tr: T.Hyperband(tr, SPACE, max_resource=9, seed=0, executor="sequential"),
    lambda tr: T.ASHA(tr, SPACE, num_trials=9, max_resource=9, seed=0, executor="sequential"),
    lambda tr: T.BOHB(tr, SPACE, max_resource=9, seed=0, executor="sequential"),
    lambda tr: T.Search(tr, SPACE, num_trials=5, max_resource=3, seed=0, executor="sequential"),
    lambda tr: T.MedianStopping(tr, SPACE, num_trials=6, max_resource=4, seed=0, executor="sequential"),
], ids=["hyperband", "asha", "bohb", "search", "median"])
def test_ask_and_tell_make_the_decisions_run_makes(make):
    tuner = make(None)
    jobs = _drive(tuner, lambda config, total: (config["x"] - 0.3) ** 2 + 1.0 / (1 + total))
    assert tuner.done and tuner.ask() is None
    ran = make(H.Quadratic).run()     # the same metric, trained by the tuner itself
    assert tuner.result().table() == ran.table() and len(jobs) == sum(len(t.history) for t in ran.trials)
    assert all(j.total == j.trained + j.budget and j.budget >= 1 for j in jobs)


def test_ask_hands_out_a_whole_rung_and_tell_checks_what_it_is_told(tmp_path):
    tuner = T.Hyperband(None, SPACE, max_resource=9, seed=0, executor="sequential", checkpoint_dir=tmp_path)
    first = [tuner.ask() for _ in range(9)]          # the first rung of bracket s=2: 9 jobs of 1 unit
    assert [j.budget for j in first] == [1] * 9 and tuner.ask() is None and not tuner.done
    with pytest.raises(ValueError, match="no job of that trial was asked and not yet told"):
        tuner.tell(99, 0.5)
    with pytest.raises(TypeError, match="one of them"):
        tuner.tell(first[0])
    with pytest.raises(KeyError, match="without the tuner's metric 'metric'"):
        tuner.tell(first[0], {"loss": 0.5})         # (nothing recorded: it can be told again)
    tuner.tell(first[0], error="diverged")
    tuner.tell(first[1], float("nan"))
    assert [t.status for t in tuner.result().trials[:2]] == ["failed", "failed"]
    for job in first[2:5]:
        tuner.tell(job, job.config["x"])
    # a new tuner on the checkpoint asks the jobs in flight again, then goes on to the end
    again = T.Hyperband(None, SPACE, max_resource=9, seed=0, executor="sequential", checkpoint_dir=tmp_path,
                        resume=True)
    rest = _drive(again, lambda config, total: config["x"])
    assert [j.trial_id for j in rest[:4]] == [j.trial_id for j in first[5:]] and again.done
    assert again.result().count("failed") == 2


def test_ask_and_tell_are_for_a_tuner_without_a_trainable():
    with pytest.raises(TypeError, match="built without a trainable .*drive it with ask\\(\\) and tell\\(\\)"):
        T.Hyperband(None, SPACE, max_resource=3, executor="sequential").run()
    with pytest.raises(TypeError, match="ask\\(\\) drives a tuner built without a trainable"):
        hyperband().ask()
    with pytest.raises(TypeError, match="PBT copies members' states between trials"):
        T.PBT(None, SPACE, population=4, perturbation_interval=1, max_resource=3)
