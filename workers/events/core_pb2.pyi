from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Core(_message.Message):
    __slots__ = ("id", "name", "timestamp", "type", "service_name", "application_id", "event_id", "organization_id", "user_id", "token_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    timestamp: str
    type: str
    service_name: str
    application_id: str
    event_id: str
    organization_id: str
    user_id: str
    token_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., timestamp: _Optional[str] = ..., type: _Optional[str] = ..., service_name: _Optional[str] = ..., application_id: _Optional[str] = ..., event_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., user_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("trace_context", "trace_tags", "service_name")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TRACE_TAGS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    trace_context: _containers.ScalarMap[str, str]
    trace_tags: _containers.ScalarMap[str, str]
    service_name: str
    def __init__(self, trace_context: _Optional[_Mapping[str, str]] = ..., trace_tags: _Optional[_Mapping[str, str]] = ..., service_name: _Optional[str] = ...) -> None: ...

class VtEvent(_message.Message):
    __slots__ = ("core", "trace", "baggage", "data")
    class BaggageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CORE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    BAGGAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    core: Core
    trace: Trace
    baggage: _containers.ScalarMap[str, str]
    data: _any_pb2.Any
    def __init__(self, core: _Optional[_Union[Core, _Mapping]] = ..., trace: _Optional[_Union[Trace, _Mapping]] = ..., baggage: _Optional[_Mapping[str, str]] = ..., data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
