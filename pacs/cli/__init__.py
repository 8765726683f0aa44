"""The ``pacs`` command line: the admin's interface to an archive (a composition root).

Each module holds one area's commands and registers them with the parser
(:mod:`pacs.cli.main`): ``archive`` (init, import, export, verify, migrate, serve),
``audit`` (audit verify/export, selfcheck), ``backup`` (backup, restore), ``nodes``
(modality), ``keys`` (keys, cert), ``users`` (user) and ``daily`` (daily-check). Every
command takes ``--data DIR`` (or ``PACS_DATA``), builds the settings once and passes them
on; the use cases they run live in :mod:`pacs.ops`.
"""

from pacs.cli.main import main

__all__ = ["main"]
