"""JSON text written on the intake's hot path (the batch of new ledger rows): orjson, with the
standard library for whatever orjson refuses.

orjson writes the same JSON several times faster: the standard library's encoder of the batch was
about 3% of the worker's CPU (bench/profile_worker.py). Log lines keep json's own output, spaces
and ASCII escapes included: operators grep them, and terminals show them.

orjson refuses a little that the standard library takes (integers beyond 64 bits, lone surrogates,
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
