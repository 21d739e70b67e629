"""The ``crmsync`` command line (typer). Each module holds one group of commands."""
