"""`python -m taskservice` is the `taskservice` command."""

import sys

from taskservice.cli import main

sys.exit(main())
