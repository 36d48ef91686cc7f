"""``fastadapt.models``, the public path of ``data/models.py`` (the README and
examples use ``fa.models``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.models``."""

import sys

from .data import models as _module

sys.modules[__name__] = _module
