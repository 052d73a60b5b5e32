"""JSON text written on the hot paths (the intake batch, log lines): orjson, with the standard
library for whatever orjson refuses.

orjson writes the same JSON several times faster: the standard library's encoder was about a
twentieth of the worker's CPU, in the intake batch and the log renderer (bench/profile_worker.py).
It refuses a little that the standard library takes (integers beyond 64 bits, lone surrogates,
dictionary keys that are not strings): those go through ``json`` as before, so no value that was
written is now refused. Reading stays with ``json``: orjson reads an integer beyond 64 bits as a
float. What must stay byte for byte as it was (the payload digest) keeps using ``json`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# Timestamps and other objects reach ``default`` as they do with json.dumps, so the caller decides
# (the ledger refuses a naive timestamp there).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)``, faster."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=default)


def render(value: Any, **kwargs: Any) -> str:
    """A serializer for structlog's JSONRenderer (which passes ``default``) whose lines stay ASCII.

    A log line is read in terminals and viewers: a line separator (U+2028) or a bidirectional
    control (U+202E) from an event's field must arrive escaped, as json.dumps writes them by
    default, never raw. orjson writes them raw, so a line that is not all ASCII is written by json.
    """
    default = kwargs.get("default")
    text = dumps(value, default=default)
    if text.isascii():
        return text
    return json.dumps(value, separators=(",", ":"), default=default)
