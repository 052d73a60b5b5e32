from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BasicEmail(_message.Message):
    __slots__ = ("from_address", "to_address", "subject", "body", "reply_to", "body_html")
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    BODY_HTML_FIELD_NUMBER: _ClassVar[int]
    from_address: str
    to_address: str
    subject: str
    body: str
    reply_to: str
    body_html: str
    def __init__(self, from_address: _Optional[str] = ..., to_address: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., reply_to: _Optional[str] = ..., body_html: _Optional[str] = ...) -> None: ...

class SMSNotification(_message.Message):
    __slots__ = ("from_number", "to_number", "message")
    FROM_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TO_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    from_number: str
    to_number: str
    message: str
    def __init__(self, from_number: _Optional[str] = ..., to_number: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
