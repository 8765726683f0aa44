"""Forwarding rules: the ``[[route]]`` tables of pacs.toml, parsed and checked.

A route says which studies an association delivers are sent on, and to which enrolled node::

    [[route]]
    name = "ct-to-teleradiology"
    from_ae = "CT1"        # optional: the calling AE title that delivered the study
    modality = "CT"        # optional: one of the study's modalities
    to = "TELERAD"         # required: the AE title of an enrolled node that has a port

A route without ``from_ae`` and ``modality`` forwards every study received. Whether ``to`` is
enrolled is checked against the nodes (:func:`unknown_destinations`) when the service starts
and by ``pacs selfcheck``; the keys themselves are checked here, when the settings are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from storage.errors import PacsError

KEYS = ("name", "from_ae", "modality", "to")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")


class RouteError(PacsError, ValueError):
    """A ``[[route]]`` table is invalid; the message names it and the key at fault."""


@dataclass(frozen=True)
class Route:
    """One forwarding rule: studies from `from_ae` and/or of `modality` go `to` a node ("" = any)."""

    name: str
    to: str
    from_ae: str = ""
    modality: str = ""

    def matches(self, from_ae: str, modalities: Iterable[str]) -> bool:
        """Whether a study delivered by `from_ae`, with `modalities`, is sent on by this route."""
        if self.from_ae and self.from_ae != from_ae:
            return False
        return not self.modality or self.modality in set(modalities)

    def describe(self) -> str:
        """The rule in words, e.g. ``from CT1, modality CT -> TELERAD``."""
        what = [f"from {self.from_ae}"] if self.from_ae else []
        what += [f"modality {self.modality}"] if self.modality else []
        return f"{', '.join(what) or 'every study received'} -> {self.to}"


def _text(where: str, table: dict[str, Any], key: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise RouteError(f"{where}: {key} must be text, got {value!r}")
    return value.strip()


def _route(where: str, table: Any, check_ae: Callable[[str], str | None]) -> Route:
    """One table of ``[[route]]``, checked."""
    if not isinstance(table, dict):
        raise RouteError(f"{where}: each [[route]] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise RouteError(f"{where}: unknown key {unknown[0]} (known: {', '.join(KEYS)})")
    name, to = _text(where, table, "name"), _text(where, table, "to")
    from_ae, modality = _text(where, table, "from_ae"), _text(where, table, "modality").upper()
    if not _NAME.match(name):
        raise RouteError(f"{where}: name {name!r} must be 1 to 64 letters, digits, '.', '_' or '-'")
    for key, value in (("to", to), ("from_ae", from_ae)):
        problem = check_ae(value) if value or key == "to" else None
        if problem:
            raise RouteError(f"{where} ({name}): {key} {value!r} {problem}")
    if modality and not _MODALITY.match(modality):
        raise RouteError(f"{where} ({name}): modality {modality!r} is not a modality such as CT or MR")
    if from_ae and from_ae == to:
        raise RouteError(f"{where} ({name}): a route may not send studies back to where they came from")
    return Route(name=name, to=to, from_ae=from_ae, modality=modality)


def parse_routes(raw: Any, origin: str, check_ae: Callable[[str], str | None]) -> tuple[Route, ...]:
    """The routes of a pacs.toml's ``route`` array (`origin` names the file in errors)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RouteError(f"{origin}: route must be an array of tables, written [[route]]")
    routes = tuple(_route(f"{origin}: [[route]] #{n}", table, check_ae) for n, table in enumerate(raw, 1))
    names = [route.name for route in routes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RouteError(f"{origin}: two [[route]] tables are named {twice[0]!r}")
    return routes


def unknown_destinations(routes: Iterable[Route], ports: dict[str, int | None]) -> list[str]:
    """A line for each route whose destination is not an enrolled node with a port (`ports`: AE -> port)."""
    problems = []
    for route in routes:
        if route.to not in ports:
            problems.append(f"route {route.name}: destination {route.to} is not an enrolled node")
        elif ports[route.to] is None:
            problems.append(f"route {route.name}: destination {route.to} has no port to send to")
    return problems
