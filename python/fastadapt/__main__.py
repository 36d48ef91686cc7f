"""``python -m fastadapt ...``: the ``fastadapt`` command, for environments
where the console script is not on PATH (a venv not activated, ``--user``
installs, Windows)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
