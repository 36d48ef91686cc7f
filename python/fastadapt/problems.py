"""``fastadapt.problems``, the public path of ``data/problems.py`` (the README and
examples use ``fa.problems``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.problems``."""

import sys

from .data import problems as _module

sys.modules[__name__] = _module
