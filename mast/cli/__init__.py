"""Command-line interface (``mast COMMAND --help``)."""
