"""Links to the neighbouring pages of a paged list, and to other orders of it, that keep the request's
other query arguments.
"""

from __future__ import annotations

from flask import request, url_for


def url_with(endpoint: str, **changes: str | None) -> str:
    """The URL of `endpoint` with this request's query arguments, changed as given (None drops one)."""
    args = request.args.to_dict()
    for name, value in changes.items():
        if value is None:
            args.pop(name, None)
        else:
            args[name] = value
    return url_for(endpoint, **args)


def page_url(endpoint: str, page: int) -> str:
    """The URL of `endpoint` with this request's query arguments and ``page`` set to `page`."""
    return url_with(endpoint, page=str(page))


def current_page() -> int:
    """The ``page`` argument of this request (1 when absent or not a number)."""
    value = request.args.get("page", "1")
    return max(1, min(int(value), 100_000)) if value.isdigit() else 1


def neighbours(endpoint: str, page: int, *, more: bool) -> dict[str, str | None]:
    """``newer`` and ``older`` links for a newest-first list (None where there is no such page)."""
    return {
        "newer": page_url(endpoint, page - 1) if page > 1 else None,
        "older": page_url(endpoint, page + 1) if more else None,
    }
