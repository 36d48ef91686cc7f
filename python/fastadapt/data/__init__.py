"""Data and small examples to train on.

- ``datasets.py``: MNIST from files on this machine (``fastadapt.datasets``);
- ``batching.py``: [`batches`][fastadapt.batches], reproducible mini-batches
  over in-memory arrays;
- ``models.py``: a NumPy MLP, the seed article's network (``fastadapt.models``);
- ``problems.py``: small problems with known answers (``fastadapt.problems``);
- ``mnist_example.py``: the seed article's MNIST example end to end (what
  ``fastadapt mnist`` runs), built from the pieces above and ``train/``.
"""
