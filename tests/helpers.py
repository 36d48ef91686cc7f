"""Helpers shared by the tests (copying and comparing nested structures)."""

import numpy as np


def copy_tree(tree):
    if isinstance(tree, dict):
        return {k: copy_tree(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(copy_tree(v) for v in tree)
    return tree.copy()


def leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from leaves(v)
    else:
        yield tree


def same_bits(a, b):
    """Byte-for-byte equality (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def trees_same_bits(a, b):
    la, lb = list(leaves(a)), list(leaves(b))
    return len(la) == len(lb) and all(same_bits(x, y) for x, y in zip(la, lb))


def mlp_trainer(callbacks, seed=0):
    """A small MLP trainer (4-3-2, Adam) for callback tests."""
    import fastadapt as fa
    from fastadapt.models import MLP

    model = MLP([4, 3, 2], seed=seed)
    return fa.Trainer("adam", lr=1e-2, loss_and_grad=model.loss_and_grad, params=model.params,
                      loss_fn=model.loss, callbacks=callbacks, progress=False)


def two_batches():
    """Two batches of 8 samples for :func:`mlp_trainer` (label: x0 > 0)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    return [(X[:8], y[:8]), (X[8:], y[8:])]
