"""``fastadapt.callbacks``, the path Keras users expect (``keras.callbacks``)
and the README names. The callbacks live in ``train/callbacks/`` (the
protocol in ``base.py``, one module per ready-made callback); this module
makes that package answer to its old name too: the same module object, so
``fastadapt.callbacks.ModelCheckpoint is fastadapt.ModelCheckpoint`` and
code that patches one sees it in the other. Library code imports
``train.callbacks`` directly."""

import sys
from typing import TYPE_CHECKING

from .train import callbacks as _callbacks

if TYPE_CHECKING:  # what type checkers, which do not run the line below, find here
    from .train.callbacks import *  # noqa: F401,F403

sys.modules[__name__] = _callbacks
