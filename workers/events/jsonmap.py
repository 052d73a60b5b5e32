"""Proto3 JSON objects into our messages, with errors that name the field and never echo its value.

``json_format.ParseDict`` does the canonical mapping (lowerCamelCase or snake_case names, int64 as
number or string, null as default). It is lenient in places (a string where an object belongs
parses as an empty message) and its error messages quote the offending value, which may be an
address or a phone number. So a walk over the schema runs first and reports the JSON type
problems itself; whatever ParseDict still refuses is reported by field path only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from workers.errors import InvalidEvent

M = TypeVar("M", bound=Message)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_map(field: Any) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _check_scalar(value: object, field: FieldDescriptor, path: str) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise InvalidEvent("must be a string", field=path)
    elif field.type == FieldDescriptor.TYPE_INT64:
        # proto3 JSON writes int64 as a string; numbers are accepted too. bool is an int in Python.
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise InvalidEvent("must be an integer", field=path)
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidEvent("is out of the int64 range", field=path)


def _check_value(value: object, field: FieldDescriptor, path: str) -> None:
    if field.message_type is not None:
        check_shape(value, field.message_type, path)
    else:
        _check_scalar(value, field, path)


def check_shape(value: object, descriptor: Any, path: str) -> None:
    """Raise InvalidEvent naming the first field whose JSON type does not fit the schema.

    Unknown keys are skipped here and ignored by the parse (forward compatibility).
    """
    if not isinstance(value, Mapping):
        raise InvalidEvent("must be a JSON object", field=path or "event")
    by_name: dict[str, Any] = {}
    for known in descriptor.fields:
        by_name[known.name] = known
        by_name[known.json_name] = known
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidEvent("has a key that is not a string", field=path or "event")
        field: FieldDescriptor | None = by_name.get(key)
        if field is None or item is None:  # null means the default value in proto3 JSON
            continue
        sub = _join(path, field.name)
        if _is_map(field):
            if not isinstance(item, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in item.items()
            ):
                raise InvalidEvent("must be a JSON object of strings", field=sub)
        elif field.is_repeated:
            if not isinstance(item, list):
                raise InvalidEvent("must be a JSON array", field=sub)
            for index, element in enumerate(item):
                _check_value(element, field, f"{sub}[{index}]")
        else:
            _check_value(item, field, sub)


def _path_from_parse_error(message: str, base: str) -> str:
    names = [_CAMEL_HUMP.sub("_", name).lower() for name in _FAILED_FIELD.findall(message)]
    path = base
    for name in names:
        path = _join(path, name)
    return path or "event"


def _reason_from_parse_error(message: str) -> str:
    if "out of range" in message:
        return "is out of range"
    if "integer" in message or "int()" in message:
        return "must be an integer"
    if "surrogate" in message:
        return "is not valid Unicode"
    return "does not fit the schema"


def parse_message(value: object, message_class: type[M], path: str) -> M:
    """Parse one proto3 JSON object into a new ``message_class``; InvalidEvent names the field."""
    check_shape(value, message_class.DESCRIPTOR, path)
    # check_shape has refused non-mappings; ParseDict wants a real dict.
    as_dict: dict[str, Any] = dict(value) if isinstance(value, Mapping) else {}
    message = message_class()
    try:
        json_format.ParseDict(as_dict, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        text = str(exc)
        # "from None": the library's message quotes the value, which may be personal data.
        raise InvalidEvent(_reason_from_parse_error(text), field=_path_from_parse_error(text, path)) from None
    return message


def message_to_plain(message: Message) -> dict[str, Any]:
    """Every field of ``message`` under its proto name, defaults included; int64 stays an int."""
    result: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            result[field.name] = dict(value)
        elif field.is_repeated:
            result[field.name] = [
                message_to_plain(item) if field.message_type is not None else item for item in value
            ]
        elif field.message_type is not None:
            result[field.name] = message_to_plain(value)
        else:
            result[field.name] = value
    return result
