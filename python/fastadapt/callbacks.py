"""``fastadapt.callbacks``, the path Keras users expect (``keras.callbacks``)
and the README names. The callbacks live in ``train/callbacks/`` (the
protocol in ``base.py``, one module per ready-made callback); this module
makes that package answer to its old name too: the same module object, so
``fastadapt.callbacks.ModelCheckpoint is fastadapt.ModelCheckpoint`` and
code that patches one sees it in the other. Library code imports
``train.callbacks`` directly."""

import sys

from .train import callbacks as _callbacks

sys.modules[__name__] = _callbacks
