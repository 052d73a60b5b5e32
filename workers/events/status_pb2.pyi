import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NotificationStatusChanged(_message.Message):
    __slots__ = ("notification_id", "event_id", "event_core_type", "event_type", "trace_context", "channel", "old_status", "new_status", "reason", "provider", "changed_at")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_CORE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    notification_id: str
    event_id: str
    event_core_type: str
    event_type: str
    trace_context: _containers.ScalarMap[str, str]
    channel: str
    old_status: str
    new_status: str
    reason: str
    provider: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, notification_id: _Optional[str] = ..., event_id: _Optional[str] = ..., event_core_type: _Optional[str] = ..., event_type: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., channel: _Optional[str] = ..., old_status: _Optional[str] = ..., new_status: _Optional[str] = ..., reason: _Optional[str] = ..., provider: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
