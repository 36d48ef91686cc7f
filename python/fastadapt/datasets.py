"""``fastadapt.datasets``, the public path of ``data/datasets.py`` (the README and
examples use ``fa.datasets``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.datasets``."""

import sys

from .data import datasets as _module

sys.modules[__name__] = _module
