"""Which parameter server owns which array: a deterministic, size-balanced
assignment, and the bookkeeping to split a parameter tree into shards and
put it back together.

Every server owns whole arrays (an array is never cut in two), so each
shard is an ordinary ``{key path: array}`` dict that a fastadapt optimizer
steps with one fused call. Key paths are the optimizer's dotted paths
(``"fc1.w"``), so per-key overrides and state dicts mean the same on a
shard as on the whole tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .._checks import integer
from .._tree import flatten_any

__all__ = ["assign_shards", "ShardLayout"]


def assign_shards(sizes: Sequence[Tuple[str, int]], num_shards: int) -> List[List[str]]:
    """Assign keys to ``num_shards`` shards, balancing the bytes per shard.

    Greedy longest-processing-time rule (Graham, 1969): keys in decreasing
    size, each to the shard with the fewest bytes so far (the lowest shard
    index on ties, the earlier key on equal sizes), which keeps the largest
    shard within 4/3 of the best possible. The result depends only on the
    input, never on hashing or timing. Within a shard, keys keep the order
    of ``sizes``, so shard-local sums run in the global key order.

    Parameters
    ----------
    sizes
        ``(key, nbytes)`` pairs in the tree's order.
    num_shards
        how many shards, 1 to ``len(sizes)``.

    Returns
    -------
    List[List[str]]
        One list of keys per shard; every shard gets at least one key.

    Examples
    --------
    >>> assign_shards([("fc1.w", 400), ("fc1.b", 40), ("fc2.w", 300), ("fc2.b", 30)], 2)
    [['fc1.w'], ['fc1.b', 'fc2.w', 'fc2.b']]
    """
    integer("num_shards", num_shards, 1)
    if num_shards > len(sizes):
        raise ValueError(f"num_shards={num_shards} exceeds the {len(sizes)} parameter arrays; a shard owns whole "
                         f"arrays, so use num_shards <= {len(sizes)}")
    keys = [key for key, _ in sizes]
    if len(set(keys)) != len(keys):
        repeated = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise ValueError(f"assign_shards: keys must be unique, {repeated!r} appears twice")
    load = [0] * num_shards
    owner: Dict[str, int] = {}
    by_size = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i][1]), i))
    for position, i in enumerate(by_size):
        # The first num_shards keys each open a shard, so no shard stays empty
        # even when the largest array outweighs all others together.
        shard = position if position < num_shards else min(range(num_shards), key=lambda s: (load[s], s))
        owner[keys[i]] = shard
        load[shard] += int(sizes[i][1])
    return [[key for key in keys if owner[key] == s] for s in range(num_shards)]


@dataclass(frozen=True)
class _Leaf:
    index: int


def _skeleton(tree: Any, counter: List[int]) -> Any:
    """The tree's containers with each array replaced by its flat index, so a
    tree of other arrays can be rebuilt with the same dict/list/tuple types."""
    if isinstance(tree, np.ndarray):
        index = counter[0]
        counter[0] += 1
        return _Leaf(index)
    if isinstance(tree, Mapping):
        return {k: _skeleton(v, counter) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_skeleton(v, counter) for v in tree)
    raise TypeError(f"params must be nested dicts, lists or tuples of float32/float64 NumPy arrays, "
                    f"found a {type(tree).__name__}")


def _fill(skeleton: Any, leaves: Sequence[Any]) -> Any:
    if isinstance(skeleton, _Leaf):
        return leaves[skeleton.index]
    if isinstance(skeleton, dict):
        return {k: _fill(v, leaves) for k, v in skeleton.items()}
    return type(skeleton)(_fill(v, leaves) for v in skeleton)


@dataclass(frozen=True)
class ShardLayout:
    """How a parameter tree is spread over the servers (plain data: it
    travels to every worker and server).

    Attributes
    ----------
    paths
        every key path, in the tree's flattening order.
    shards
        the key paths of each shard (see [`assign_shards`][fastadapt.distributed.assign_shards]).
    shapes, dtypes
        per key path, what a parameter and its gradient must be.
    """

    paths: Tuple[str, ...]
    shards: Tuple[Tuple[str, ...], ...]
    shapes: Dict[str, Tuple[int, ...]]
    dtypes: Dict[str, str]
    skeleton: Any

    @classmethod
    def of(cls, params: Any, num_shards: int) -> "ShardLayout":
        """Check ``params`` (float32/float64 arrays in dicts/lists/tuples) and
        assign its arrays to ``num_shards`` shards."""
        paths, leaves = flatten_any(params)
        if not leaves:
            raise ValueError("params is empty; pass the tree of arrays to train")
        for path, leaf in zip(paths, leaves):
            if not isinstance(leaf, np.ndarray) or leaf.dtype not in (np.float32, np.float64):
                what = leaf.dtype.name if isinstance(leaf, np.ndarray) else type(leaf).__name__
                raise TypeError(f"params[{path!r}] must be a float32 or float64 NumPy array, got {what}")
        skeleton = _skeleton(params, [0])
        shards = assign_shards([(p, leaf.nbytes) for p, leaf in zip(paths, leaves)], num_shards)
        return cls(paths=tuple(paths), shards=tuple(tuple(s) for s in shards),
                   shapes={p: leaf.shape for p, leaf in zip(paths, leaves)},
                   dtypes={p: leaf.dtype.name for p, leaf in zip(paths, leaves)}, skeleton=skeleton)

    @property
    def num_shards(self) -> int:
        """How many shards (parameter-server actors) the tree is spread over."""
        return len(self.shards)

    def split(self, flat: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """``{path: value}`` -> one ``{path: value}`` dict per shard."""
        return [{p: flat[p] for p in shard} for shard in self.shards]

    def flat(self, tree: Any) -> Dict[str, Any]:
        """``{path: leaf}`` of a tree shaped like the params."""
        paths, leaves = flatten_any(tree)
        return dict(zip(paths, leaves))

    def tree(self, flat: Mapping[str, Any]) -> Any:
        """The params' structure (same dict/list/tuple types) with ``flat[path]`` as leaves."""
        return _fill(self.skeleton, [flat[p] for p in self.paths])

    def check_grads(self, grads: Any, where: str) -> Dict[str, np.ndarray]:
        """``{path: grad}`` after checking structure, dtype and shape against
        the params; non-contiguous grads are made contiguous (they are copied
        into the object store anyway)."""
        try:
            paths, leaves = flatten_any(grads)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{where} must return grads shaped like params: {e}") from None
        if paths != list(self.paths):
            missing = [p for p in self.paths if p not in set(paths)]
            extra = [p for p in paths if p not in set(self.paths)]
            detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
            raise ValueError(f"{where} returned grads whose keys differ from params ({detail}); grads must have "
                             f"exactly the structure of params")
        out = {}
        for path, g in zip(paths, leaves):
            dtype, shape = self.dtypes[path], self.shapes[path]
            if not isinstance(g, np.ndarray) or g.dtype.name != dtype or g.shape != shape:
                got = f"{g.dtype.name} {g.shape}" if isinstance(g, np.ndarray) else type(g).__name__
                raise TypeError(f"grads[{path!r}] from {where}: expected a {dtype} array of shape {shape} (the "
                                f"param's), got {got}")
            out[path] = np.ascontiguousarray(g)
        return out
