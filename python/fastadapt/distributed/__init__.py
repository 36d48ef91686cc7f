"""Data-parallel training on Ray: a sharded parameter server whose shards
are stepped by fastadapt's fused optimizers, and workers that compute
gradients on their own data.

    ps = fa.distributed.DataParallel(params, fa.Adam(lr=1e-3), loss_and_grad=model.loss_and_grad,
                                     num_workers=2, num_shards=2, mode="sync")
    history = ps.fit(fa.distributed.shard_batches(X, y, num_workers=2, batch_size=64), epochs=5)
    params = ps.params()
    ps.shutdown()

Ray is imported only when a DataParallel is built (``pip install
"ray>=2.9"``, or ``pip install ".[ray]"`` from a checkout); importing this package does not need it.
"""

from .data import shard_batches
from .data_parallel import CHECKPOINT_FILE, DataParallel
from .sharding import ShardLayout, assign_shards
from .staleness import StalenessGate

__all__ = ["DataParallel", "shard_batches", "assign_shards", "ShardLayout", "StalenessGate", "CHECKPOINT_FILE"]
