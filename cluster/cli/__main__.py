"""`python -m qdistill.cluster.cli`: the `qdistill` command."""

from . import cli

cli()
