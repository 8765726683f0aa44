"""A setting's raw value (from pacs.toml, or text from the environment) as the type its key declares.

:func:`coerce` is what :mod:`pacs.core.config` reads every key through: whole numbers (never
booleans), text, and lists of text (a TOML list, or comma-separated text in a variable).
"""

from __future__ import annotations

from typing import Any


def kind_of(annotation: Any) -> type:
    """The kind (int, tuple or str) a settings field with `annotation` holds."""
    if annotation in ("int", int):
        return int
    return tuple if str(annotation).startswith("tuple") else str


def coerce(name: str, kind: type, value: Any) -> Any:
    """`value` of setting `name` as `kind`; ValueError (naming the setting) if it is not one."""
    if kind is tuple:
        return _text_list(name, value)
    if kind is int:
        return _whole_number(name, value)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected text, got {value!r}")
    return value


def _text_list(name: str, value: Any) -> tuple[str, ...]:
    """A TOML list of text, or comma-separated text (from the environment), as a tuple."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value)
    raise ValueError(f"{name}: expected a list of text, got {value!r}")


def _whole_number(name: str, value: Any) -> int:
    """An integer from TOML or from text; a boolean is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name}: expected a whole number, got {value!r}")
