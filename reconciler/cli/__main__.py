"""`python -m reconciler.cli`: the same as the `reconcile` command."""

import sys

from reconciler.cli.main import main

sys.exit(main())
