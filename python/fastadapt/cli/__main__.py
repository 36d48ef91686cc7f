"""``python -m fastadapt.cli ...``: the ``fastadapt`` command."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
