"""`python -m fulfil` is the `fulfil` command."""

from __future__ import annotations

from fulfil.cli import main

if __name__ == "__main__":
    main(prog_name="fulfil")
