"""``pacs study``: the group of day-to-day study care commands.

Each area adds its own actions to the group: finding and deleting studies, correcting
them, forwarding them and making anonymized copies live in their own modules.
"""

from __future__ import annotations

from typing import Protocol

from pacs.cli import study_anonymize, study_forward, study_trash, study_versions
from pacs.cli.common import Subcommands, add_group


class Area(Protocol):
    """A module that adds its actions to the ``pacs study`` group."""

    def register(self, studies: Subcommands) -> None:
        """Add this area's actions to `studies`."""


AREAS: tuple[Area, ...] = (study_trash, study_versions, study_forward, study_anonymize)


def register(commands: Subcommands) -> None:
    """Add ``pacs study`` and the actions of every area to the parser."""
    studies = add_group(commands, "study", "find, delete, correct, forward or anonymize studies")
    for area in AREAS:
        area.register(studies)
