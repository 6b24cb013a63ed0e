"""`python -m labs COMMAND`: see `python -m labs --help` (labs/cli.py)."""

from labs.cli import main

raise SystemExit(main())
