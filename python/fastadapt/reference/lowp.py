"""Low-precision storage in plain NumPy: bfloat16/float16 rounding (to
nearest even, and stochastic for bfloat16), the 8-bit block quantization of
optimizer state, and a wrapper that runs any reference rule with
low-precision params, grads and state exactly as the kernels do.

The kernels stage a low-precision tensor through float32: they widen the
param, grad and state to float32, run the float32 rule, then round the param
back (from float32 master weights when kept) and re-quantize the state.
[`LowPrecision`][fastadapt.reference.LowPrecision] does the same around a
float32 reference optimizer, so the two agree bit for bit.

8-bit state (Dettmers et al., "8-bit Optimizers via Block-wise Quantization",
ICLR 2022): blocks of [`QBLOCK`][fastadapt.reference.QBLOCK] elements from the
tensor's start, each with its absolute maximum in float32 and one byte per
element: the index of the nearest value of a sorted 256-entry dynamic map,
after dividing by the absmax. First moments use the signed map, second
moments (never negative) the unsigned one, which has one more bit of
fraction.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .._tree import flatten_any

QBLOCK = 256
"""Elements per quantization block (each keeps one float32 absmax)."""

_MASK32 = np.uint64(0xFFFFFFFF)


_LEVELS = 8


@functools.lru_cache(maxsize=2)
def map_tables(signed: bool) -> Dict[str, np.ndarray]:
    """The dynamic map in closed form: per level ``L = 0..7`` (7: the value 1
    alone) of ``n_L`` values (signed ``2**L``, unsigned ``2**(L + 1)``), the
    float32 constants ``dec = 10**(6 - L)``, ``invdec = 10**(L - 6)``,
    ``step = 0.9 / n_L`` (1.8 for level 7), ``invstep = 1 / step``, the
    thresholds ``thr`` between levels (float32 midpoints of the neighbouring
    values), and each level's ``offset`` among the magnitudes and ``last``
    index (``n_L - 1``). Value ``k`` of level ``L`` is
    ``(0.1f + step[L] * (k + 0.5f)) * invdec[L]`` in float32."""
    decade = [1e6, 1e5, 1e4, 1e3, 1e2, 1e1, 1e0, 1e0]
    t: Dict[str, list] = {k: [] for k in ("dec", "invdec", "step", "invstep", "offset", "last")}
    offset = 1
    for L in range(_LEVELS):
        n = 1 if L == 7 else (2 ** L if signed else 2 ** (L + 1))
        step = 1.8 if L == 7 else 0.9 / n
        t["dec"].append(decade[L])
        t["invdec"].append(1.0 / decade[L])
        t["step"].append(step)
        t["invstep"].append(1.0 / step)
        t["offset"].append(offset)
        t["last"].append(n - 1)
        offset += n
    out = {k: np.array(v, dtype=np.float64).astype(np.float32) for k, v in t.items() if k not in ("offset", "last")}
    out["offset"] = np.array(t["offset"], dtype=np.int32)
    out["last"] = np.array(t["last"], dtype=np.int32)
    mags = [np.float32(0)]
    for L in range(_LEVELS):
        k = np.arange(out["last"][L] + 1).astype(np.float32) + np.float32(0.5)
        mags.extend((np.float32(0.1) + out["step"][L] * k) * out["invdec"][L])
    mag = np.array(mags, dtype=np.float32)
    below = np.array([0.0] + [float(mag[o - 1]) for o in out["offset"][1:]])
    out["thr"] = ((below + mag[out["offset"]].astype(np.float64)) / 2.0).astype(np.float32)
    out["values"] = np.concatenate([-mag[1:128][::-1], mag]) if signed else mag
    for v in out.values():
        v.setflags(write=False)  # (cached: shared by every caller)
    return out


def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 sorted float32 values of the 8-bit dynamic tree map (the
    paper's, to float32 rounding): for level ``i = 0..6`` the means of
    consecutive points of ``linspace(0.1, 1, n + 1)`` times ``10**(i - 6)``,
    with ``n = 2**i`` (signed; and their negatives) or ``2**(i + 1)``
    (unsigned); plus 0 and 1. Code ``c`` stands for ``values[c]`` times its
    block's absmax."""
    return map_tables(signed)["values"]


def _clamp01(a: np.ndarray) -> np.ndarray:
    # a > 0 ? min(a, 1) : 0, with NaN -> 0
    with np.errstate(invalid="ignore"):
        return np.where(a > 0, np.where(a < 1, a, np.float32(1)), np.float32(0)).astype(np.float32)


def quantize(x: np.ndarray, signed: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Block-wise 8-bit quantization of a float32 array (flattened).

    Per block: ``absmax`` (NaN if the block holds a NaN), ``inv = 1 / absmax``
    (0 when absmax is 0 or NaN), the normalized magnitude
    ``a = clamp01(|x| * inv)`` (``x * inv`` for the unsigned map; NaN and
    negatives give 0). Its level ``L`` is the number of thresholds
    ``thr <= a`` less one (none: the magnitude index ``j = 0``, the value 0);
    within it ``k = clip(rint((a * dec[L] - 0.1) * invstep[L] - 0.5), 0,
    last[L])`` (the nearest value; float32 operations) and
    ``j = offset[L] + k``. The code is ``j`` (unsigned) or ``127 + j`` /
    ``127 - min(j, 127)`` (signed, by the sign bit of ``x``). One exception
    to nearest: the unsigned map codes every positive ``a`` as at least ``j = 1``
    (its smallest non-zero value), so that a second moment is never stored as 0
    under a non-zero first moment (Adam's step would be ``m / eps``).

    Returns
    -------
    tuple
        ``(codes, absmax)``: uint8 codes of ``x``'s shape, float32 absmax per block.
    """
    q = map_tables(signed)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    n = flat.size
    nblocks = -(-n // QBLOCK)
    padded = np.zeros(nblocks * QBLOCK, dtype=np.float32)  # (zeros never raise a block's absmax)
    padded[:n] = flat
    blocks = padded.reshape(nblocks, QBLOCK)
    mag = np.abs(blocks)
    absmax = mag.max(axis=1, initial=np.float32(0)).astype(np.float32)
    absmax[np.isnan(mag).any(axis=1)] = np.frombuffer(np.uint32(0x7FC00000).tobytes(), dtype=np.float32)[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(absmax > 0, np.float32(1) / absmax, np.float32(0)).astype(np.float32)
        a = _clamp01((mag if signed else blocks) * inv[:, None]).reshape(-1)
    count = (a[:, None] >= q["thr"][None, :]).sum(axis=1)
    L = np.maximum(count - 1, 0)
    t = (a * q["dec"][L] - np.float32(0.1)) * q["invstep"][L] - np.float32(0.5)
    k = np.clip(np.rint(t).astype(np.int64), 0, q["last"][L])
    j = np.where(count > 0, q["offset"][L] + k, 0)
    if not signed:  # a positive second moment never becomes 0 (it would make Adam's step m / eps)
        j = np.where((a > 0) & (j == 0), 1, j)
    if signed:
        neg = (padded.view(np.uint32) >> 31).astype(bool)
        codes = np.where(neg, 127 - np.minimum(j, 127), 127 + j)
    else:
        codes = j
    return codes[:n].astype(np.uint8).reshape(np.shape(x)), absmax


def dequantize(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """float32 values of 8-bit codes: ``map[code] * absmax`` of their block."""
    values = dynamic_map(signed)
    flat = codes.reshape(-1)
    scale = np.repeat(absmax.astype(np.float32), QBLOCK)[:flat.size]
    with np.errstate(invalid="ignore", over="ignore"):
        return (values[flat] * scale).reshape(codes.shape)


_U = np.uint64  # (every integer constant typed: NumPy 1.x would promote uint64 with a Python int to float64)


def round_bf16(x: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) of float32 ``x``, rounded to nearest even; NaN
    stays NaN (its quiet bit set)."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (b & _U(0x7FFFFFFF)) > _U(0x7F800000)
    rne = ((b + _U(0x7FFF) + ((b >> _U(16)) & _U(1))) & _MASK32) >> _U(16)
    return np.where(nan, (b >> _U(16)) | _U(0x40), rne).astype(np.uint16)


def lowbias32(x: Any) -> np.ndarray:
    """The stochastic-rounding hash (Chris Wellons' "lowbias32") on uint32 values."""
    x = np.asarray(x, dtype=np.uint64) & _MASK32
    x = x ^ (x >> _U(16))
    x = (x * _U(0x7FEB352D)) & _MASK32
    x = x ^ (x >> _U(15))
    x = (x * _U(0x846CA68B)) & _MASK32
    x = x ^ (x >> _U(16))
    return x


def rounding_key(seed: int, step: int, tensor: int) -> int:
    """The key of tensor ``tensor`` (its position in key order) at step ``step``."""
    s = (seed & 0xFFFFFFFF) ^ ((seed >> 32) & 0xFFFFFFFF)
    t = (step & 0xFFFFFFFF) ^ ((step >> 32) & 0xFFFFFFFF)
    inner = int(lowbias32((tensor + 0x632BE5AB) & 0xFFFFFFFF))
    return int(lowbias32(s ^ int(lowbias32(t ^ inner))))


def round_bf16_stochastic(x: np.ndarray, key: int, first: int = 0) -> np.ndarray:
    """bfloat16 bits of float32 ``x`` rounded stochastically: element ``i``
    (counted from ``first`` in its tensor) adds ``lowbias32(i ^ key) & 0xFFFF``
    below the kept bits and truncates; non-finite values round to nearest."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    b = flat.view(np.uint32).astype(np.uint64)
    idx = (np.arange(flat.size, dtype=np.uint64) + _U(first)) & _MASK32
    noise = lowbias32(idx ^ _U(key)) & _U(0xFFFF)
    sr = (((b + noise) & _MASK32) >> _U(16)).astype(np.uint16)
    special = (b & _U(0x7F800000)) == _U(0x7F800000)
    return np.where(special, round_bf16(flat), sr).astype(np.uint16).reshape(np.shape(x))


def _is_bf16(dtype: np.dtype) -> bool:
    return dtype.itemsize == 2 and dtype.name == "bfloat16"


def widen(a: np.ndarray) -> np.ndarray:
    """A float32 copy of a bfloat16/float16/float32 array (exact)."""
    if _is_bf16(a.dtype):
        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


class LowPrecision:
    """Run a float32 reference optimizer as the kernels run low precision.

    Parameters
    ----------
    inner
        a reference optimizer (e.g. ``fastadapt.reference.Adam(...)``); it sees float32 copies of the
        params and grads, and its state as float32.
    state
        how state is stored: ``"float32"``, ``"bfloat16"`` or ``"int8"`` (block-quantized).
    nonnegative
        buffer names quantized with the unsigned map (the rule's second moments).
    master_weights
        keep float32 master weights (low-precision params are rounded from them).
    stochastic_rounding
        round bfloat16 params stochastically with keys from ``seed``.
    seed
        the stochastic rounding seed.
    initial
        buffers a rule starts at a value other than 0 (AdaGrad's ``{"sum": initial_accumulator_value}``):
        created and stored in low precision before the first step, as the optimizer creates them.
    """

    def __init__(self, inner: Any, *, state: str = "float32", nonnegative: Sequence[str] = (),
                 master_weights: bool = False, stochastic_rounding: bool = False, seed: int = 0,
                 initial: Optional[Dict[str, float]] = None):
        self.inner = inner
        self.initial = dict(initial or {})
        self.state_kind = state
        self.nonnegative = set(nonnegative)
        self.master_weights = master_weights
        self.stochastic_rounding = stochastic_rounding
        self.seed = seed
        self.stored: Dict[str, Dict[str, Any]] = {}   # path -> name -> array or (codes, absmax)
        self.master: Dict[str, np.ndarray] = {}

    def update(self, params: Any, grads: Any) -> Any:
        """One step: ``params`` (any float dtype) updated in place from ``grads``, as the kernels do;
        returns ``params``. A skipped step (``nonfinite="skip"``) changes nothing."""
        paths, ps = flatten_any(params)
        _, gs = flatten_any(grads)
        p32 = {}
        for path, p in zip(paths, ps):
            if p.dtype == np.float64:
                p32[path] = p.copy()
            elif self.master_weights and p.dtype != np.float32:
                p32[path] = self.master.setdefault(path, widen(p)).copy()
            else:
                p32[path] = widen(p)
        g32 = {path: (g.copy() if g.dtype == np.float64 else widen(g)) for path, g in zip(paths, gs)}
        for path in paths:
            if path not in self.stored and self.initial:
                self.stored[path] = {name: self._store(name, np.full(p32[path].shape, v, dtype=p32[path].dtype))
                                     for name, v in self.initial.items()}
        # the state as the kernel sees it: dequantized / widened
        self.inner.state = {path: {name: self._load(name, v) for name, v in entry.items()}
                            for path, entry in self.stored.items()}
        steps, skipped = self.inner.step_count, self.inner.skipped_steps
        self.inner.update(p32, g32)
        if self.inner.step_count == steps:  # skipped: nothing was written
            assert self.inner.skipped_steps == skipped + 1
            return params
        t = self.inner.step_count
        for i, (path, p) in enumerate(zip(paths, ps)):
            new = p32[path]
            if p.dtype in (np.float32, np.float64):
                p[...] = new
                continue
            if self.master_weights:
                self.master[path] = new.copy()
            if _is_bf16(p.dtype):
                if self.stochastic_rounding:
                    bits = round_bf16_stochastic(new, rounding_key(self.seed, t, i))
                else:
                    bits = round_bf16(new)
                p.view(np.uint16)[...] = bits.reshape(p.shape)
            else:
                p[...] = new.astype(np.float16)
        self.stored = {path: {name: self._store(name, v) for name, v in entry.items()}
                       for path, entry in self.inner.state.items()}
        return params

    def _load(self, name: str, v: Any) -> np.ndarray:
        if isinstance(v, tuple):
            codes, absmax = v
            return dequantize(codes, absmax, name not in self.nonnegative)
        if isinstance(v, np.ndarray) and v.dtype == np.uint16:  # bfloat16 bits
            return (v.astype(np.uint32) << 16).view(np.float32)
        return v

    def _store(self, name: str, v: np.ndarray) -> Any:
        if not isinstance(v, np.ndarray) or v.dtype != np.float32 or v.ndim == 0:
            return v
        if self.state_kind == "int8":
            return quantize(v, name not in self.nonnegative)
        if self.state_kind == "bfloat16":
            return round_bf16(v).reshape(v.shape)
        return v

    def dequantized_state(self) -> Dict[str, Dict[str, np.ndarray]]:
        """The state as float32 arrays (what the next step starts from)."""
        return {path: {name: self._load(name, v) for name, v in entry.items()} for path, entry in self.stored.items()}
