"""The query parameters of a QIDO-RS search (PS3.18 8.3.4), read and checked.

An attribute is named by its keyword or its tag (``PatientID`` or ``00100020``); a filter's
value is matched as C-FIND matches it (:mod:`storage.matching`), a UID list written with
commas or backslashes, an empty value only returns the attribute. ``includefield`` may be
repeated and may list attributes with commas, or be ``all``. ``limit`` and ``offset`` are
non-negative integers (a limit at least 1), ``fuzzymatching`` is ``true`` or ``false``.
Anything else, a nested attribute (``a.b``) or a filter given twice ends the request with
400 and the reason as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn

from flask import Response, abort, request
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

_TAG = re.compile(r"[0-9A-Fa-f]{8}")


@dataclass(frozen=True)
class Search:
    """What a QIDO-RS request asks: its filters (keyword: value), the attributes to include, the page."""

    filters: dict[str, str] = field(default_factory=dict)
    included: tuple[str, ...] = ()
    all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False


def bad_request(message: str) -> NoReturn:
    """End the request with 400 and `message` (one line of text)."""
    abort(Response(message, status=400, mimetype="text/plain"))


def keyword(name: str) -> str:
    """The keyword of the attribute `name` (a keyword or a tag of 8 hex digits), or 400."""
    if "." in name:
        bad_request(f"{name}: matching or returning attributes within sequences is not supported")
    if _TAG.fullmatch(name):
        found = keyword_for_tag(int(name, 16))
        if found:
            return found
    elif tag_for_keyword(name) is not None:
        return name
    bad_request(f"{name} is not a query parameter, nor the keyword or tag of a DICOM attribute")


def _number(name: str, value: str, least: int) -> int:
    if not value.isdigit() or int(value) < least:
        bad_request(f"{name} must be a whole number of at least {least}, not {value!r}")
    return int(value)


def _fuzzy(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        bad_request(f"fuzzymatching must be true or false, not {value!r}")
    return value.lower() == "true"


def _filter_value(name: str, value: str) -> str:
    """`value` as matching reads it: a UID list's commas become backslashes."""
    if dictionary_VR(tag_for_keyword(name)) == "UI":
        return value.replace(",", "\\")
    return value


def read_search() -> Search:
    """This request's query parameters as a :class:`Search`; 400 for anything malformed."""
    filters: dict[str, str] = {}
    included: list[str] = []
    everything = fuzzy = False
    limit, offset = None, 0
    for name, value in request.args.items(multi=True):
        if name == "limit":
            limit = _number(name, value, 1)
        elif name == "offset":
            offset = _number(name, value, 0)
        elif name == "fuzzymatching":
            fuzzy = _fuzzy(value)
        elif name == "includefield":
            for each in filter(None, (part.strip() for part in value.split(","))):
                everything = everything or each == "all"
                if each != "all":
                    included.append(keyword(each))
        elif not value:
            included.append(keyword(name))
        else:
            found = keyword(name)
            if found in filters:
                bad_request(f"{name} is given more than once")
            filters[found] = _filter_value(found, value)
    return Search(filters, tuple(dict.fromkeys(included)), everything, limit, offset, fuzzy)
