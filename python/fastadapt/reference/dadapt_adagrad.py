"""D-Adapted AdaGrad (Defazio & Mishchenko 2023; the ``dadaptation``
package's ``DAdaptAdaGrad``, dense gradients) in plain NumPy, in
docs/algorithms.md's operation order (section "DAdaptAdaGrad").

One step over all tensors, with ``dlr = d * lr`` (d from the last step):
per tensor, with its own ``eps`` and ``weight_decay``,

    gd = g + wd*p
    old_w = sk * (sk / (sqrt(alphak) + eps))      (the old sk and alphak; only when eps changed, below)
    alphak = alphak + gd*gd
    den = sqrt(alphak) + eps
    gw = gd * (gd / den)
    sk = sk + dlr*gd
    new_w = sk * (sk / den),  l1 = |sk|
    p = p*(1-ck) + ck*(x0 - sk/den)   (p = x0 - sk/den when momentum == 0)

and per-tensor sums (``tensor_sum``) of float64 values: the products
``gw``, ``new_w`` and ``old_w`` are of two factors computed in the dtype and
multiplied in float64 (the quotient ``sk / den`` is the one p's update
uses), ``l1`` is widened: ``GW = sum gw``, ``NW = sum new_w``,
``L1 = sum l1`` (and ``OW = sum old_w``). The package subtracts each
tensor's sums over the old ``sk`` and ``alphak`` from its new ones; those
old sums are the tensor's ``NW`` and ``L1`` of its last step, bit for bit,
so each tensor carries them (``sksq_weighted_param``, ``skl1_param``, and
``sksq_weighted_eps``, the eps ``NW`` was computed with): ``OW`` is
recomputed only when eps is not that eps (changed, or no step yet), and the
old ``L1`` never. The package's running totals move by the per-tensor
changes in tensor order:

    sksq_weighted += sum_t (NW - old NW)      (old NW: carried, or OW)
    skl1          += sum_t (L1 - old L1)
    gsq_weighted  += dlr*dlr * sum_t GW
    d = max(d, min((sksq_weighted - gsq_weighted) / skl1, d*growth_rate))   (if lr > 0)

A step whose new ``skl1`` is 0 keeps the totals and d as they were (alphak,
sk and each tensor's carried sums move), as the package's early return does;
p stays too while no step has been committed (``skl1`` 0 before the step:
all gradients zero so far). After that p moves even then (the fused kernel
writes p in the pass that finds the sums; the package would hold p back
when every ``sk`` cancels to exactly 0).
"""

from __future__ import annotations

import numpy as np

from ._common import tensor_sum
from ._dadapt import GlobalReference, pymax, pymin

ALPHAK_INIT = 1e-6  # the package's fill value of alphak (a constant, not eps or d0)


def dadapt_adagrad_tensor(p, g, alphak, sk, *, dlr, eps, weight_decay, old_w):
    """Pass 0 on one tensor: alphak and sk in place; returns the sums
    ``(GW, NW, L1, OW)``, OW (the old weighted sum) only if ``old_w`` (else None)."""
    T = p.dtype.type
    f64 = np.float64
    gd = g + T(weight_decay) * p if weight_decay != 0 else g
    ow = None
    if old_w:
        ow = tensor_sum(sk.astype(f64) * (sk / (np.sqrt(alphak) + T(eps))).astype(f64))
    alphak[...] = alphak + gd * gd
    den = np.sqrt(alphak) + T(eps)
    gw = gd.astype(f64) * (gd / den).astype(f64)
    sk[...] = sk + T(dlr) * gd
    new_w = sk.astype(f64) * (sk / den).astype(f64)   # (sk / den: the quotient p's update uses)
    return tensor_sum(gw), tensor_sum(new_w), tensor_sum(np.abs(sk).astype(f64)), ow


def dadapt_adagrad_move(p, alphak, sk, x0, *, eps, momentum):
    """The parameter update of one tensor from the updated alphak and sk."""
    T = p.dtype.type
    z = x0 - sk / (np.sqrt(alphak) + T(eps))
    if momentum != 0:
        ck = 1.0 - momentum
        p[...] = p * T(1.0 - ck) + T(ck) * z
    else:
        p[...] = z


def dadapt_adagrad_totals(sums, carried, *, d, gsq_weighted, sksq_weighted, skl1, lr, growth_rate):
    """The step's float64 scalars from the per-tensor sums and each tensor's
    carried ``(old NW or None, old L1)`` (in tensor order). Returns (learned
    scalars after the step, whether p moves)."""
    dlr = d * lr
    g_sq = 0.0
    sksq_change = 0.0
    skl1_change = 0.0
    for (gw, new_w, l1, ow), (old_w, old_l1) in zip(sums, carried):
        g_sq += gw
        sksq_change += new_w - (ow if old_w is None else old_w)
        skl1_change += l1 - old_l1
    new_skl1 = skl1 + skl1_change
    if new_skl1 == 0.0:
        # the package returns early: no total moves; p moves only where the
        # kernel has already written it (a committed step before, see the module doc)
        return dict(d=d, gsq_weighted=gsq_weighted, sksq_weighted=sksq_weighted, skl1=skl1), skl1 != 0.0
    sksq_weighted = sksq_weighted + sksq_change
    gsq_weighted = gsq_weighted + dlr * dlr * g_sq
    if lr > 0.0:  # (as the package: lr 0 moves the totals, not d)
        d = pymax(d, pymin((sksq_weighted - gsq_weighted) / new_skl1, d * growth_rate))
    return dict(d=d, gsq_weighted=gsq_weighted, sksq_weighted=sksq_weighted, skl1=new_skl1), True


class DAdaptAdaGrad(GlobalReference):
    """[`fastadapt.DAdaptAdaGrad`][fastadapt.DAdaptAdaGrad] in plain NumPy: one step over all tensors with
    one global ``d``; ``eps`` and ``weight_decay`` may differ per tensor (state
    ``alphak``, ``sk``, ``x0`` and the learned scalars, see the module)."""

    defaults = dict(lr=1.0, momentum=0.0, weight_decay=0.0, eps=1e-6, d0=1e-6, growth_rate=float("inf"),
                    maximize=False)
    per_tensor = ("eps", "weight_decay")

    def _initial_learned(self):
        return dict(d=float(self.d0), gsq_weighted=0.0, sksq_weighted=0.0, skl1=0.0)

    def _global_step(self, pending):
        learned = self._learned()
        dlr = learned["d"] * self.lr
        sums, carried = [], []
        for path, p, g, hp in pending:
            alphak = self._buffer(path, "alphak", p, ALPHAK_INIT)
            sk = self._buffer(path, "sk", p)
            st = self.state[path]
            if "x0" not in st:
                st["x0"] = p.copy()
            # the tensor's sums of its last step (0 before its first: sk is 0)
            old_nw = float(st.get("sksq_weighted_param", 0.0))
            old_l1 = float(st.get("skl1_param", 0.0))
            keep = float(st.get("sksq_weighted_eps", 0.0)) == hp["eps"]
            sums.append(dadapt_adagrad_tensor(p, g, alphak, sk, dlr=dlr, eps=hp["eps"],
                                              weight_decay=hp["weight_decay"], old_w=not keep))
            carried.append((old_nw if keep else None, old_l1))
        learned, moves = dadapt_adagrad_totals(sums, carried, **learned, lr=self.lr,
                                                   growth_rate=self.growth_rate)
        for (path, *_, hp), (_, new_w, l1, _) in zip(pending, sums):
            st = self.state[path]
            for name, value in (("sksq_weighted_param", new_w), ("skl1_param", l1),
                                ("sksq_weighted_eps", hp["eps"])):
                st[name] = np.array(value, dtype=np.float64)
        if moves:
            for path, p, _, hp in pending:
                st = self.state[path]
                dadapt_adagrad_move(p, st["alphak"], st["sk"], st["x0"], eps=hp["eps"], momentum=self.momentum)
        self._store_learned([path for path, *_ in pending], learned)
