"""Command line tests: ``pacs`` and its subcommands, run in process and as the installed script."""
