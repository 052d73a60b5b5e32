"""Proto3 JSON objects into our messages, with errors that name the field and never echo its value.

``json_format.ParseDict`` does the canonical mapping (lowerCamelCase or snake_case names, int64 as
number or string, null as default). It is lenient in places (a string where an object belongs
parses as an empty message) and its error messages quote the offending value, which may be an
address or a phone number. So a walk over the schema runs first and reports the JSON type
problems itself; whatever ParseDict still refuses is reported by field path only.

That canonical path is slow (two walks in Python, then protobuf's own converter), so the usual
event takes a fast path first: ``plain_from_json`` and ``fields_from_json`` map a document whose
every value is plainly right (the JSON type the schema asks for, no duplicate spellings of a
field, no extension keys, no surrogates, int64 as a decimal within range) straight to what the
canonical path would produce, and answer None for anything else, which then takes the canonical
path and gets its errors. tests/events/test_events_fast_path.py holds the two paths to agreeing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from workers.errors import InvalidEvent

M = TypeVar("M", bound=Message)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field")
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")
# What the fast path takes for an int64 given as a string; int() takes more ("+1", " 1", "1_0", other
# scripts' digits) and ParseDict some of that, so anything else goes the canonical way. 19 digits
# keeps int() clear of its digit limit; the range is checked after.
_INT64_DECIMAL = re.compile(r"-?[0-9]{1,19}")
# Any surrogate: ParseDict refuses unpaired ones and the runtime paired ones (they are not UTF-8).
_SURROGATE = re.compile("[\ud800-\udfff]")


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


# How a field is read by the fast paths. Whatever is not one of the first five is left to the
# canonical path (other scalar types, repeated scalars, oneofs, well-known types such as Any).
_STRING: Final = 0
_INT64: Final = 1
_MESSAGE: Final = 2
_REPEATED_MESSAGE: Final = 3
_STRING_MAP: Final = 4
_OTHER: Final = 5
_DECLINE: Final = object()  # what _fast_container answers for a value the canonical path must see


class _Layout:
    """One message type's fields as the fast paths see them, worked out once per type.

    ``keys`` maps both spellings of a field (proto name, lowerCamelCase JSON name) to
    (proto name, kind, nested layout, the other spelling or None). ``template`` is the plain dict of
    an empty message (shared: copy it), or None when a field kind rules the plain fast path out.
    """

    __slots__ = ("keys", "messages", "names", "repeated", "scalars", "template")

    def __init__(self, descriptor: Any, known: dict[Any, _Layout]) -> None:
        known[descriptor] = self  # before the fields, so a recursive type finds itself
        self.template: dict[str, Any] | None = None  # what a recursive type sees: no plain fast path
        self.names: tuple[str, ...] = tuple(field.name for field in descriptor.fields)
        self.keys: dict[str, tuple[str, int, _Layout | None, str | None]] = {}
        self.messages: tuple[tuple[str, _Layout], ...] = ()
        self.repeated: tuple[str, ...] = ()
        self.scalars: bool = True  # every field a string or an int64: the plain dict is one read each
        plain_ok = True
        for field in descriptor.fields:
            kind, sub = _kind(field, known)
            alias = field.json_name if field.json_name != field.name else None
            self.keys[field.name] = (field.name, kind, sub, alias)
            if alias is not None:
                self.keys[alias] = (field.name, kind, sub, field.name)
            if kind == _MESSAGE and sub is not None:
                self.messages += ((field.name, sub),)
            elif kind == _REPEATED_MESSAGE:
                self.repeated += (field.name,)
            elif kind != _STRING and kind != _INT64:
                plain_ok = False
            if sub is not None and sub.template is None:
                plain_ok = False
            self.scalars = self.scalars and kind in (_STRING, _INT64)
        if plain_ok:
            self.template = {
                name: "" if kind == _STRING else 0 if kind == _INT64 else None
                for name, kind, _, _ in (self.keys[name] for name in self.names)
            }

    def empty(self) -> dict[str, Any]:
        """The plain dict of an empty message of this type (``template`` is not None)."""
        assert self.template is not None
        result = dict(self.template)
        for name, sub in self.messages:
            result[name] = sub.empty()
        for name in self.repeated:
            result[name] = []
        return result


def _kind(field: Any, known: dict[Any, _Layout]) -> tuple[int, _Layout | None]:
    if field.containing_oneof is not None:
        return _OTHER, None
    message_type = field.message_type
    if message_type is not None:
        if message_type.GetOptions().map_entry:
            key, value = message_type.fields_by_name["key"], message_type.fields_by_name["value"]
            strings = key.type == value.type == FieldDescriptor.TYPE_STRING
            return (_STRING_MAP if strings else _OTHER), None
        if message_type.full_name.startswith("google.protobuf."):  # JSON forms of their own
            return _OTHER, None
        sub = known.get(message_type) or _Layout(message_type, known)
        return (_REPEATED_MESSAGE if field.is_repeated else _MESSAGE), sub
    if field.is_repeated:
        return _OTHER, None
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRING, None
    if field.type == FieldDescriptor.TYPE_INT64:
        return _INT64, None
    return _OTHER, None


_LAYOUTS: dict[Any, _Layout] = {}  # by descriptor


def _layout(descriptor: Any) -> _Layout:
    layout = _LAYOUTS.get(descriptor)
    if layout is None:
        known: dict[Any, _Layout] = {}
        layout = _Layout(descriptor, known)
        _LAYOUTS.update(known)  # published whole: another thread never finds one half built
    return layout


def _fast_container(kind: int, sub: _Layout | None, item: object, plain: bool) -> object:
    """A message, repeated message or map value as the fast path gives it, or ``_DECLINE``."""
    if kind == _MESSAGE:
        assert sub is not None
        converted = _fast(item, sub, plain)
        return _DECLINE if converted is None else converted
    if kind == _REPEATED_MESSAGE:
        assert sub is not None
        if type(item) is not list:
            return _DECLINE
        elements = []
        for element in item:
            converted = _fast(element, sub, plain)
            if converted is None:
                return _DECLINE
            elements.append(converted)
        return elements
    if kind == _STRING_MAP and not plain and type(item) is dict:
        # A plain dict would have to list a map in the runtime's order, not the document's.
        for key, value in item.items():
            for text in (key, value):
                if type(text) is not str or (not text.isascii() and _SURROGATE.search(text)):
                    return _DECLINE
        return dict(item)
    return _DECLINE


def _fast(value: object, layout: _Layout, plain: bool) -> dict[str, Any] | None:
    """``value`` as a plain dict (``plain``) or as constructor keywords, or None: take the canonical way."""
    if type(value) is not dict:
        return None
    template = layout.template
    if plain and template is None:
        return None
    result: dict[str, Any] = dict(template) if plain and template is not None else {}
    keys = layout.keys
    for key, item in value.items():
        entry = keys.get(key)
        if entry is None:
            # Unknown keys are ignored, except what ParseDict takes for an extension name.
            if type(key) is not str or key.startswith("["):
                return None
            continue
        name, kind, sub, alias = entry
        if alias is not None and alias in value:  # both spellings: ParseDict merges or overwrites
            return None
        if item is None:  # null is the default, as in proto3 JSON
            continue
        # Strings and int64s inline: they are the bulk of every document.
        if kind == _STRING:
            if type(item) is not str or (not item.isascii() and _SURROGATE.search(item)):
                return None
            result[name] = item
            continue
        if kind == _INT64:
            if type(item) is str:
                if not _INT64_DECIMAL.fullmatch(item):
                    return None
                item = int(item)
            elif type(item) is not int:  # bool is not int here, and a float goes the canonical way
                return None
            if not _INT64_MIN <= item <= _INT64_MAX:
                return None
            result[name] = item
            continue
        converted = _fast_container(kind, sub, item, plain)
        if converted is _DECLINE:
            return None
        result[name] = converted
    if plain and template is not None and not layout.scalars:
        for name, sub in layout.messages:
            if result[name] is None:
                result[name] = sub.empty()
        for name in layout.repeated:
            if result[name] is None:
                result[name] = []
    return result


def plain_from_json(value: object, message_class: type[Message]) -> dict[str, Any] | None:
    """``message_to_plain(parse_message(value, message_class, ...))`` for a plainly valid document.

    None when the document needs the canonical path: a wrong JSON type, a field spelled both ways,
    a float or odd string for an int64, a surrogate, a map or another field kind not handled here.
    """
    return _fast(value, _layout(message_class.DESCRIPTOR), True)


def fields_from_json(value: object, message_class: type[Message]) -> dict[str, Any] | None:
    """Keyword arguments that build what ``parse_message`` would, or None (see ``plain_from_json``).

    Only the fields the document gives (not null) are listed, nested messages as dicts, so a
    message given as ``{}`` is present in the built message as it is after ParseDict.
    """
    return _fast(value, _layout(message_class.DESCRIPTOR), False)


class _Reader:
    """How ``message_to_plain`` reads one message type, worked out once per type."""

    __slots__ = ("maps", "messages", "names", "repeated_messages", "repeated_scalars")

    def __init__(self, descriptor: Any) -> None:
        self.names = tuple(field.name for field in descriptor.fields)
        self.maps = tuple(field.name for field in descriptor.fields if _is_map(field))
        self.messages = tuple(
            field.name
            for field in descriptor.fields
            if field.message_type is not None and not field.is_repeated
        )
        self.repeated_messages = tuple(
            field.name
            for field in descriptor.fields
            if field.is_repeated and field.message_type is not None and not _is_map(field)
        )
        self.repeated_scalars = tuple(
            field.name for field in descriptor.fields if field.is_repeated and field.message_type is None
        )


_READERS: dict[Any, _Reader] = {}


def message_to_plain(message: Message) -> dict[str, Any]:
    """Every field of ``message`` under its proto name, defaults included; int64 stays an int."""
    descriptor = message.DESCRIPTOR
    reader = _READERS.get(descriptor)
    if reader is None:
        reader = _READERS[descriptor] = _Reader(descriptor)
    # Read every field in declaration order, then replace the containers in place (keeps the order).
    result = {name: getattr(message, name) for name in reader.names}
    for name in reader.messages:
        result[name] = message_to_plain(result[name])
    for name in reader.repeated_messages:
        result[name] = [message_to_plain(item) for item in result[name]]
    for name in reader.maps:
        result[name] = dict(result[name])
    for name in reader.repeated_scalars:
        result[name] = list(result[name])
    return result
