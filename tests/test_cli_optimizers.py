"""Every registered optimizer is reachable from the command line: ``fastadapt
mnist --optimizer NAME`` trains with it at its own default lr, ``lr-find``
accepts it, ``info`` lists it, and a wrong name is one line naming every valid
one. The lists come from the registry (``fastadapt.optim.OPTIMIZERS``), so a
rule registered later shows up without touching the CLI (tested with a rule
defined here)."""

import json

import pytest

from fastadapt import datasets
from fastadapt.cli import main
from fastadapt.optim import OPTIMIZERS, SGD
from test_datasets import _fake_mnist_dir

NAMES = sorted(OPTIMIZERS)
# Written out, not read from the classes: a CLI that fell back to one lr for
# every rule (it had 1e-3) fails here, and so does a changed rule default.
OWN_DEFAULT_LR = {"adadelta": 1.0, "adafactor": 1e-2, "adagrad": 1e-2, "adam": 1e-3, "adamax": 2e-3,
                  "adamw": 1e-3, "lamb": 1e-3, "lars": 1e-3, "lion": 1e-4, "muon": 1e-3, "nadam": 2e-3,
                  "radam": 1e-3, "rmsprop": 1e-2, "sgd": 1e-3}
OWN_DEFAULT_LR.update({"dog": 1.0, "ldog": 1.0})
OWN_DEFAULT_LR.update({"hd-sgd": 1e-3, "hd-adam": 1e-3})
OWN_DEFAULT_LR.update({"dadapt-sgd": 1.0, "dadapt-adagrad": 1.0})  # D-Adaptation: lr multiplies the learned d
OWN_DEFAULT_LR.update({"schedulefree-adamw": 0.0025, "schedulefree-sgd": 1.0})
OWN_DEFAULT_LR.update({"prodigy": 1.0, "dadapt-adam": 1.0})


@pytest.fixture(autouse=True)
def _no_mnist_dir_from_the_environment(monkeypatch):
    monkeypatch.delenv(datasets.ENV_DIR, raising=False)


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    data = tmp_path_factory.mktemp("mnist")
    _fake_mnist_dir(data, gz=False, n_train=40, n_test=10)
    return data


def _cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``fastadapt argv``, argparse's SystemExit included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_the_expected_table_covers_the_registry():
    assert sorted(OWN_DEFAULT_LR) == NAMES  # a new rule: add its default lr above
    for name, lr in OWN_DEFAULT_LR.items():
        assert OPTIMIZERS[name]().lr == lr, name


@pytest.mark.parametrize("name", NAMES)
def test_mnist_trains_with_every_rule_at_its_own_default_lr(name, tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, err = _cli(capsys, "mnist", "--optimizer", name, "--data-dir", tiny_mnist, "--epochs", "1",
                              "--batch-size", "16", "--out", out, "--no-progress")
    assert code == 0, err
    history = json.loads((out / "history.json").read_text())
    lr = OWN_DEFAULT_LR[name]
    assert history["optimizer"]["algorithm"] == name
    assert history["config"]["optimizer"] == name and history["config"]["lr"] == lr
    # What the steps used: epoch 1 of AdaptiveLR's 3-epoch warmup runs at lr * 1/3; a learning-rate-free
    # rule trains without AdaptiveLR, at its lr as given.
    lr_free = getattr(OPTIMIZERS[name], "lr_free", False)
    assert history["history"]["lr"] == [pytest.approx(lr if lr_free else lr / 3, rel=1e-12)]
    assert history["schedule"] == ("none" if lr_free else "AdaptiveLR")
    assert f"{type(OPTIMIZERS[name]()).__name__}(lr={lr!r}" in printed


def test_an_explicit_lr_wins_over_the_rules_default(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "mnist", "--optimizer", "lion", "--lr", "3e-4", "--data-dir", tiny_mnist,
                        "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["lr"] == 3e-4 and history["history"]["lr"] == [pytest.approx(1e-4, rel=1e-12)]


def test_names_are_case_insensitive_as_in_make_optimizer(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "mnist", "--optimizer", "LAMB", "--data-dir", tiny_mnist, "--epochs", "1",
                        "--out", out, "--no-progress")
    assert code == 0, err
    assert json.loads((out / "history.json").read_text())["optimizer"]["algorithm"] == "lamb"


@pytest.mark.parametrize("command", ["mnist", "lr-find"])
def test_a_wrong_name_is_one_line_naming_every_valid_one(command, tmp_path, capsys):
    code, out, err = _cli(capsys, command, "--optimizer", "adamm", "--out", tmp_path / "out")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err == (f"fastadapt {command}: argument --optimizer: unknown optimizer 'adamm'; expected one of "
                   f"{', '.join(NAMES)} (see fastadapt {command} --help)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["mnist", "lr-find"])
def test_help_lists_every_rule(command, capsys):
    code, out, _ = _cli(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())  # argparse wraps the help
    assert f"{', '.join(NAMES)} (default adam)" in text
    if command == "mnist":
        listed = ", ".join(f"{name} {lr:g}" for name, lr in sorted(OWN_DEFAULT_LR.items()))
        assert f"(default: the optimizer's own: {listed})" in text


def test_info_lists_every_rule(capsys):
    code, out, _ = _cli(capsys, "info")
    assert code == 0 and f"fastadapt mnist --optimizer name): {', '.join(NAMES)}\n" in out
    code, out, _ = _cli(capsys, "info", "--json")
    assert code == 0
    assert json.loads(out)["optimizers"] == {name: {"default_lr": lr} for name, lr in sorted(OWN_DEFAULT_LR.items())}


@pytest.mark.parametrize("name", NAMES)
def test_lr_find_runs_every_rule(name, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, err = _cli(capsys, "lr-find", "--optimizer", name, "--problem", "least-squares",
                              "--num-steps", "8", "--verify-steps", "0", "--out", out)
    assert code == 0, err
    written = json.loads((out / "lr_find.json").read_text())
    cls = type(OPTIMIZERS[name]()).__name__
    assert written["optimizer"].startswith(f"{cls}(") and f"with {cls}:" in printed


def test_a_rule_registered_later_is_offered_at_its_own_lr(tiny_mnist, tmp_path, capsys):
    class LaterRule(SGD):
        """SGD under another name and default lr, registered by defining it."""

        algorithm = "later_rule_for_the_cli_test"

        def __init__(self, lr: float = 0.0123, **kwargs):
            super().__init__(lr=lr, **kwargs)

    try:
        code, out, _ = _cli(capsys, "mnist", "--help")
        assert "later_rule_for_the_cli_test 0.0123" in " ".join(out.split())
        code, _, err = _cli(capsys, "mnist", "--optimizer", LaterRule.algorithm, "--data-dir", tiny_mnist,
                            "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
        assert code == 0, err
        history = json.loads((tmp_path / "run" / "history.json").read_text())
        assert history["optimizer"]["algorithm"] == LaterRule.algorithm and history["config"]["lr"] == 0.0123
        code, out, _ = _cli(capsys, "info", "--json")
        assert json.loads(out)["optimizers"][LaterRule.algorithm] == {"default_lr": 0.0123}
    finally:
        OPTIMIZERS.pop(LaterRule.algorithm)


def test_a_rule_without_a_default_lr_asks_for_lr(tiny_mnist, tmp_path, capsys):
    class NoDefaultLR(SGD):
        """A rule whose lr must be given (optax's style)."""

        algorithm = "no_default_lr_for_the_cli_test"

        def __init__(self, lr: float, **kwargs):
            super().__init__(lr=lr, **kwargs)

    try:
        code, out, err = _cli(capsys, "mnist", "--optimizer", NoDefaultLR.algorithm, "--data-dir", tiny_mnist,
                              "--out", tmp_path / "run", "--no-progress")
        assert code == 2 and out == ""
        assert err == f"fastadapt mnist: --optimizer {NoDefaultLR.algorithm} has no default learning rate; " \
                      f"pass --lr\n"
        assert not (tmp_path / "run").exists()
        code, _, err = _cli(capsys, "mnist", "--optimizer", NoDefaultLR.algorithm, "--lr", "0.5", "--data-dir",
                            tiny_mnist, "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
        assert code == 0, err
    finally:
        OPTIMIZERS.pop(NoDefaultLR.algorithm)


def test_a_learning_rate_free_rule_trains_without_the_lr_controller(tiny_mnist, tmp_path, capsys):
    class SelfTuned(SGD):
        """SGD that says it sets its own step size (lr_free = True), registered by defining it."""

        algorithm = "self_tuned_for_the_cli_test"
        lr_free = True

        def __init__(self, lr: float = 0.0123, **kwargs):
            super().__init__(lr=lr, **kwargs)

    try:
        code, printed, err = _cli(capsys, "mnist", "--optimizer", SelfTuned.algorithm, "--data-dir", tiny_mnist,
                                  "--epochs", "4", "--out", tmp_path / "run", "--no-progress")
        assert code == 0, err
        history = json.loads((tmp_path / "run" / "history.json").read_text())
        # No warmup (AdaptiveLR's first epoch would run at lr / 3) and no plateau cut: the rule's own lr throughout.
        assert history["history"]["lr"] == [0.0123] * len(history["history"]["lr"])
        assert history["schedule"] == "none" and history["config"]["lr"] == 0.0123
        assert f"schedule: none ({SelfTuned.algorithm} is learning-rate-free: it sets its own step size)" in printed
        code, printed, err = _cli(capsys, "mnist", "--optimizer", "sgd", "--data-dir", tiny_mnist, "--epochs", "1",
                                  "--out", tmp_path / "sgd", "--no-progress")
        assert code == 0, err
        assert "schedule: AdaptiveLR(warmup 3, patience 2, factor 0.5)" in printed
    finally:
        OPTIMIZERS.pop(SelfTuned.algorithm)
