"""`python run.py [options]` is `fulfil run [options]`."""

from __future__ import annotations

import sys

from fulfil.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]], prog_name="fulfil")
