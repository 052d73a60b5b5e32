"""The helpers a template can call: handlebars.js's built-ins and Mandrill's inline helpers.

Built-ins (``if``, ``unless``, ``each``, ``with``, ``lookup``, ``log``) follow handlebars.js 4.7,
including its argument-count errors. Mandrill's helpers:

* ``upper``, ``lower``: change case of the printed value.
* ``title``: title case as Mandrill documents it: ``{{title "your text is neat"}}`` gives
  ``Your Text is Neat``. Every word is lower-cased, then capitalised, except short function words
  (articles, conjunctions, short prepositions and "is") after the first word, which stay lower case.
* ``url``: URL-encode like PHP ``urlencode`` (space becomes ``+``; only ``A-Za-z0-9-_.`` stay).
* ``date``: the current UTC date in a PHP ``date()`` format, default ``d/m/Y``; our extension: a
  second argument, unix seconds (number or numeric string), formats that instant instead of now.
* ``striptags``: remove HTML tags (``<...>``) from the printed value.
* ``unsub``: Mandrill rewrites its URL argument into its own unsubscribe-tracking redirect; when we
  render locally nothing can track it, so it prints the URL unchanged.

All of them print nothing for a missing argument, and ``{{helper}}`` output is escaped like any
value. Helper names shadow data fields of the same name, as in Mandrill.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from workers.errors import TemplateError
from workers.rendering.hbs_runtime import Helper, Options, create_frame
from workers.rendering.values import (
    get_property,
    is_array,
    is_empty,
    js_falsy,
    js_string,
    object_keys,
)


def _if(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    if len(args) != 1:
        raise TemplateError("#if requires exactly one argument")
    value = args[0]
    if (not hash_.get("includeZero") and js_falsy(value)) or is_empty(value):
        return options.inverse(context)
    return options.fn(context)


def _unless(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    if len(args) != 1:
        raise TemplateError("#unless requires exactly one argument")
    swapped = Options(options.name, options.inverse, options.fn, options.data, hash_)
    return _if(context, args, hash_, swapped)


def each_items(context: Any, value: Any, options: Options) -> str:
    """The ``each`` loop, shared by ``{{#each}}`` and Mustache-style sections over arrays."""
    fn = options.fn
    frame = create_frame(options.data)
    out: list[str] = []
    if is_array(value):
        last = len(value) - 1
        for index, item in enumerate(value):
            frame["key"] = index
            frame["index"] = index
            frame["first"] = index == 0
            frame["last"] = index == last
            out.append(fn(item, frame, [item, index]))
        if not value:
            return options.inverse(context)
        return "".join(out)
    if isinstance(value, Mapping):
        keys = object_keys(value)
        last = len(keys) - 1
        for index, key in enumerate(keys):
            item = value[key]
            frame["key"] = key
            frame["index"] = index
            frame["first"] = index == 0
            frame["last"] = index == last
            out.append(fn(item, frame, [item, key]))
        if not keys:
            return options.inverse(context)
        return "".join(out)
    return options.inverse(context)


def _each(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    if not args:
        raise TemplateError("Must pass iterator to #each")
    return each_items(context, args[0], options)


def _with(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    if len(args) != 1:
        raise TemplateError("#with requires exactly one argument")
    value = args[0]
    if is_empty(value):
        return options.inverse(context)
    return options.fn(value, None, [value])


def _lookup(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    target = args[0] if args else None
    if js_falsy(target):
        return target
    return get_property(target, js_string(args[1] if len(args) > 1 else None))


def _log(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    # handlebars.js writes to the console; we never log template data (it is personal data).
    return None


def _text(args: list[Any]) -> str:
    return js_string(args[0]) if args else ""


def _upper(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return _text(args).upper()


def _lower(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return _text(args).lower()


_WORD = re.compile(r"\S+")
# Words Mandrill's ``title`` leaves in lower case unless they come first (its documented example keeps
# "is" lower case); the usual title-case list of articles, conjunctions and short prepositions.
_SMALL_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "but",
        "by",
        "en",
        "for",
        "if",
        "in",
        "is",
        "nor",
        "of",
        "on",
        "or",
        "per",
        "the",
        "to",
        "v",
        "vs",
        "via",
    ]
)


def title_case(text: str) -> str:
    first = True

    def cap(match: re.Match[str]) -> str:
        nonlocal first
        word = match.group(0)
        keep_small = not first and word in _SMALL_WORDS
        first = False
        return word if keep_small else word[:1].upper() + word[1:]

    return _WORD.sub(cap, text.lower())


def _title(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return title_case(_text(args))


def url_encode(text: str) -> str:
    return quote_plus(text, safe="").replace("~", "%7E")


def _url(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return url_encode(_text(args))


_TAG = re.compile(r"<[^>]*>")


def strip_tags(text: str) -> str:
    return _TAG.sub("", text)


def _striptags(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return strip_tags(_text(args))


def _unsub(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    return _text(args)


_PHP_DATE: dict[str, Callable[[datetime], str]] = {
    "d": lambda t: f"{t.day:02d}",
    "j": lambda t: str(t.day),
    "D": lambda t: t.strftime("%a"),
    "l": lambda t: t.strftime("%A"),
    "N": lambda t: str(t.isoweekday()),
    "w": lambda t: str(t.isoweekday() % 7),
    "z": lambda t: str(t.timetuple().tm_yday - 1),
    "S": lambda t: _ordinal_suffix(t.day),
    "W": lambda t: f"{t.isocalendar()[1]:02d}",
    "F": lambda t: t.strftime("%B"),
    "M": lambda t: t.strftime("%b"),
    "m": lambda t: f"{t.month:02d}",
    "n": lambda t: str(t.month),
    "t": lambda t: str(_days_in_month(t)),
    "Y": lambda t: f"{t.year:04d}",
    "y": lambda t: f"{t.year % 100:02d}",
    "a": lambda t: "am" if t.hour < 12 else "pm",
    "A": lambda t: "AM" if t.hour < 12 else "PM",
    "g": lambda t: str(t.hour % 12 or 12),
    "G": lambda t: str(t.hour),
    "h": lambda t: f"{t.hour % 12 or 12:02d}",
    "H": lambda t: f"{t.hour:02d}",
    "i": lambda t: f"{t.minute:02d}",
    "s": lambda t: f"{t.second:02d}",
    "e": lambda t: "UTC",
    "T": lambda t: "UTC",
    "P": lambda t: "+00:00",
    "O": lambda t: "+0000",
    "Z": lambda t: "0",
    "U": lambda t: str(int(t.timestamp())),
    "c": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    "r": lambda t: t.strftime("%a, %d %b %Y %H:%M:%S +0000"),
}


def _ordinal_suffix(day: int) -> str:
    if day in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _days_in_month(moment: datetime) -> int:
    return calendar.monthrange(moment.year, moment.month)[1]


def php_date(fmt: str, moment: datetime) -> str:
    """Format ``moment`` with PHP ``date()`` letters; ``\\`` escapes the next character."""
    out: list[str] = []
    escaped = False
    for char in fmt:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            render = _PHP_DATE.get(char)
            out.append(render(moment) if render else char)
    return "".join(out)


def to_utc(seconds: Any) -> datetime | None:
    """Unix seconds (a number or a numeric string, as proto3 JSON sends int64) -> aware UTC time."""
    if seconds is None or isinstance(seconds, bool):
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return None
    if value != value or abs(value) > 253402300799:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _date(context: Any, args: list[Any], hash_: dict[str, Any], options: Options) -> Any:
    fmt = js_string(args[0]) if args and args[0] is not None else "d/m/Y"
    if len(args) > 1:
        moment = to_utc(args[1])
        if moment is None:
            return ""
    else:
        moment = datetime.fromtimestamp(time.time(), tz=UTC)
    return php_date(fmt, moment)


BUILTIN_HELPERS: Mapping[str, Helper] = {
    "if": _if,
    "unless": _unless,
    "each": _each,
    "with": _with,
    "lookup": _lookup,
    "log": _log,
}

MANDRILL_HELPERS: Mapping[str, Helper] = {
    "upper": _upper,
    "lower": _lower,
    "title": _title,
    "url": _url,
    "date": _date,
    "striptags": _striptags,
    "unsub": _unsub,
}

HELPERS: Mapping[str, Helper] = {**BUILTIN_HELPERS, **MANDRILL_HELPERS}
