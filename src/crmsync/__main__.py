"""``python -m crmsync``: the same as the ``crmsync`` command."""

from crmsync.cli.main import main

main()
