"""``python -m redisresults``: the same command line as the ``redisresults`` script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
