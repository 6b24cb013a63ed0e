"""`python -m labs {grade,release,train}`: see `python -m labs --help`."""

from labs.provided.cli import main

raise SystemExit(main())
