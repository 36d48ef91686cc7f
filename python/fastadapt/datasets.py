"""``fastadapt.datasets``, the public path of ``data/datasets.py`` (the README and
examples use ``fa.datasets``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.datasets``."""

import sys
from typing import TYPE_CHECKING

from .data import datasets as _module

if TYPE_CHECKING:  # what type checkers, which do not run the line below, find here
    from .data.datasets import *  # noqa: F401,F403
    from .data.datasets import ENV_DIR as ENV_DIR  # noqa: F401

sys.modules[__name__] = _module
