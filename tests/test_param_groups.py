"""Parameter groups: the default hyperparameters plus each override that sets
one, read and moved together (what schedules and controllers build on)."""

import numpy as np
import pytest

import fastadapt as fa


def test_group_values_and_set_group_values_move_every_group_together():
    opt = fa.SGD(lr=1.0, momentum=0.5, overrides=[("b", {"lr": 10.0}), ("w", {"momentum": 0.9}),
                                                 (lambda p, a: p == "c", {"lr": 3.0})])
    assert opt.group_values("lr") == [1.0, 10.0, 3.0]
    assert opt.group_values("momentum") == [0.5, 0.9]
    params = {"w": np.zeros(2), "b": np.zeros(2), "c": np.zeros(2)}
    grads = {"w": np.ones(2), "b": np.ones(2), "c": np.ones(2)}
    opt.update(params, grads)
    opt.set_group_values("lr", [0.5, 5.0, 1.5])
    assert opt.lr == 0.5 and opt.group_values("lr") == [0.5, 5.0, 1.5]
    before = {k: v.copy() for k, v in params.items()}
    opt.update(params, grads)
    # SGD with momentum, constant gradient 1: buf = 1 + momentum * 1 at the second step
    assert np.allclose(before["b"] - params["b"], 5.0 * 1.5)
    assert np.allclose(before["c"] - params["c"], 1.5 * 1.5)
    assert np.allclose(before["w"] - params["w"], 0.5 * 1.9)


def test_set_group_values_checks_everything_before_changing_anything():
    opt = fa.SGD(lr=1.0, momentum=0.5, nesterov=True, overrides={"b": {"lr": 10.0}, "w": {"momentum": 0.9}})
    with pytest.raises(ValueError, match=r"Invalid overrides\[0\]\['lr'\]"):
        opt.set_group_values("lr", [0.1, -1.0])
    with pytest.raises(ValueError, match="needs 2 values"):
        opt.set_group_values("lr", [0.1])
    with pytest.raises(ValueError, match="Nesterov momentum requires momentum > 0"):
        opt.set_group_values("momentum", [0.5, 0.0])  # the override group would break nesterov
    with pytest.raises(KeyError, match="no hyperparameter 'learning_rate'"):
        opt.group_values("learning_rate")
    assert opt.group_values("lr") == [1.0, 10.0] and opt.group_values("momentum") == [0.5, 0.9]


def test_state_dict_keeps_the_override_groups_values():
    make = lambda: fa.SGD(lr=1.0, momentum=0.5, overrides=[("b", {"lr": 10.0}), ("w", {"momentum": 0.9})])
    opt = make()
    opt.set_group_values("lr", [0.5, 5.0])
    sd = opt.state_dict()
    assert sd["overrides"] == [{"lr": 5.0}, {"momentum": 0.9}]
    fresh = make()
    fresh.load_state_dict(sd)
    assert fresh.group_values("lr") == [0.5, 5.0] and fresh.group_values("momentum") == [0.5, 0.9]
    # Saved for other overrides: refused, nothing changed.
    other = fa.SGD(lr=1.0, momentum=0.5, overrides=[("b", {"lr": 10.0})])
    with pytest.raises(ValueError, match=r"state_dict\['overrides'\]"):
        other.load_state_dict(sd)
    bad = dict(sd, overrides=[{"lr": -1.0}, {"momentum": 0.9}])
    with pytest.raises(ValueError, match=r"Invalid state_dict\['overrides'\]\[0\]\['lr'\]"):
        fresh.load_state_dict(bad)
    assert fresh.group_values("lr") == [0.5, 5.0] and other.group_values("lr") == [1.0, 10.0]
    # A state_dict without the entry (no overrides when saved) keeps the current values.
    plain = fa.SGD(lr=0.25, momentum=0.5).state_dict()
    assert "overrides" not in plain
    fresh.load_state_dict(plain)
    assert fresh.group_values("lr") == [0.25, 5.0]
