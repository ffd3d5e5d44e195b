"""`python -m taskservice` is the `taskservice` command."""

import sys

from taskservice.cli.main import main

sys.exit(main())
