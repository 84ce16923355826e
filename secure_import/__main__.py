"""``python -m secure_import`` is the ``secure-import`` command."""

from __future__ import annotations

import sys

from secure_import.cli import main

if __name__ == "__main__":
    sys.exit(main())
