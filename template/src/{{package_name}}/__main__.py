"""Run the command-line interface with `python -m`."""

from .cli import main

raise SystemExit(main())
