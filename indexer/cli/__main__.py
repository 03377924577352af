"""`python -m indexer.cli`."""

from indexer.cli.app import main

main()
