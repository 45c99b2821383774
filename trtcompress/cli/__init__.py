"""Command-line interface: one module per verb, registered in :mod:`trtcompress.cli.main`."""
