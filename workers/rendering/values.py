"""JavaScript value semantics for templates: printing, HTML escaping, truthiness and property lookup.

Template data arrives as JSON-shaped Python values (dict, list, str, int, float, bool, None). Both
engines print and test them the way handlebars.js would treat the equivalent JavaScript values,
because template authors write against handlebars.js behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*").fullmatch


class SafeString(str):
    """Text a helper marks as already safe HTML (handlebars.js ``SafeString``): printed unescaped."""

    __slots__ = ()


def escape_html(text: str) -> str:
    """Escape ``text`` with handlebars.js's character set.

    Chained ``str.replace`` measured several times faster than ``str.translate`` or a regex here,
    and escaping is the hottest operation in rendering; ``&`` must go first.
    """
    if "&" in text:
        text = text.replace("&", "&amp;")
    return (
        text.replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
        .replace("`", "&#x60;")
        .replace("=", "&#x3D;")
    )


def js_number(value: float) -> str:
    """Print a float as JavaScript's ``Number.prototype.toString`` does (``2.0`` prints ``2``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    text = repr(value)
    if "e" not in text and "E" not in text:
        return text[:-2] if text.endswith(".0") else text
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        # Python switches to exponent notation earlier than JavaScript does.
        positional = format(Decimal(text), "f")
        return positional[:-2] if positional.endswith(".0") else positional
    mantissa, exponent = text.split("e")
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    power = int(exponent)
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


def js_string(value: Any) -> str:
    """``String(value)`` as a template prints it; ``None`` (null/undefined) prints as empty."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return str(value)
    if kind is float:
        return js_number(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return "[object Object]"
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        # Array.prototype.toString: elements joined by commas, holes and nulls empty.
        return ",".join(js_string(item) for item in value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return js_number(float(value))
    return str(value)


def is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def is_object(value: Any) -> bool:
    """True for values JavaScript would call ``typeof 'object'`` and not null (maps and arrays)."""
    return isinstance(value, (Mapping, list, tuple))


def js_falsy(value: Any) -> bool:
    """JavaScript's ``!value``."""
    if value is None or value is False:
        return True
    if value is True:
        return False
    kind = type(value)
    if kind is str:
        return not value
    if kind is int:
        return value == 0  # type: ignore[no-any-return]
    if kind is float:
        return value == 0 or value != value  # type: ignore[no-any-return]
    return False


def is_empty(value: Any) -> bool:
    """handlebars.js ``Utils.isEmpty``: falsy but not ``0``, or an empty array; ``{}`` is not empty."""
    if is_array(value):
        return len(value) == 0
    return js_falsy(value) and not (type(value) in (int, float) and value == 0)


def get_property(container: Any, key: str) -> Any:
    """One path step: an own property of a map, an array index or ``length``; otherwise ``None``."""
    if type(container) is dict:
        return container.get(key)
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, (list, tuple, str)):
        if key == "length":
            return len(container)
        if _ARRAY_INDEX(key) is not None:
            index = int(key)
            if index < len(container):
                return container[index]
    return None


def object_keys(value: Mapping[str, Any]) -> list[str]:
    """``Object.keys`` order: array-index keys ascending first, then the others in insertion order."""
    keys = [str(key) for key in value]
    indexes = [key for key in keys if _ARRAY_INDEX(key) is not None and int(key) < 4294967295]
    if not indexes:
        return keys
    index_set = set(indexes)
    return sorted(indexes, key=int) + [key for key in keys if key not in index_set]


def loosely_equal(left: Any, right: Any) -> bool:
    """Enough of JavaScript's ``==`` to decide whether a block moved to a new context."""
    if left is right:
        return True
    if is_object(left) or is_object(right):
        return False
    if left is None or right is None:
        return left is None and right is None
    if type(left) is type(right):
        return bool(left == right)
    try:
        return float(left) == float(right)
    except (TypeError, ValueError):
        return False
