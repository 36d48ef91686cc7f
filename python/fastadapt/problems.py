"""``fastadapt.problems``, the public path of ``data/problems.py`` (the README and
examples use ``fa.problems``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.problems``."""

import sys
from typing import TYPE_CHECKING

from .data import problems as _module

if TYPE_CHECKING:  # what type checkers, which do not run the line below, find here
    from .data.problems import *  # noqa: F401,F403
    from .data.problems import shuffled_batches as shuffled_batches  # noqa: F401

sys.modules[__name__] = _module
