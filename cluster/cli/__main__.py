"""`python -m qdistill.cluster.cli`: the `qdistill` command."""

import sys

from . import main

sys.exit(main())
