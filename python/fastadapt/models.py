"""``fastadapt.models``, the public path of ``data/models.py`` (the README and
examples use ``fa.models``): this module makes that one answer to the old name
too, as the same module object, so a name patched in one is patched in both
and pickles naming either path load. Library code imports ``data.models``."""

import sys
from typing import TYPE_CHECKING

from .data import models as _module

if TYPE_CHECKING:  # what type checkers, which do not run the line below, find here
    from .data.models import *  # noqa: F401,F403

sys.modules[__name__] = _module
