from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MentionDeleted(_message.Message):
    __slots__ = ("event", "type", "payload")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    event: str
    type: str
    payload: MentionModifiedData
    def __init__(self, event: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[_Union[MentionModifiedData, _Mapping]] = ...) -> None: ...

class MentionEmailGenerated(_message.Message):
    __slots__ = ("event", "type", "service_name", "to_email", "from_email", "from_name", "template", "place_holders", "merge_language")
    class Mention(_message.Message):
        __slots__ = ("tracking_unit_name", "program_name", "program_image", "mention_date", "snippets", "invite_link", "via", "logouri", "creator_email", "unsubscribe_hash", "unsubscribe_link")
        TRACKING_UNIT_NAME_FIELD_NUMBER: _ClassVar[int]
        PROGRAM_NAME_FIELD_NUMBER: _ClassVar[int]
        PROGRAM_IMAGE_FIELD_NUMBER: _ClassVar[int]
        MENTION_DATE_FIELD_NUMBER: _ClassVar[int]
        SNIPPETS_FIELD_NUMBER: _ClassVar[int]
        INVITE_LINK_FIELD_NUMBER: _ClassVar[int]
        VIA_FIELD_NUMBER: _ClassVar[int]
        LOGOURI_FIELD_NUMBER: _ClassVar[int]
        CREATOR_EMAIL_FIELD_NUMBER: _ClassVar[int]
        UNSUBSCRIBE_HASH_FIELD_NUMBER: _ClassVar[int]
        UNSUBSCRIBE_LINK_FIELD_NUMBER: _ClassVar[int]
        tracking_unit_name: str
        program_name: str
        program_image: str
        mention_date: int
        snippets: str
        invite_link: str
        via: str
        logouri: str
        creator_email: str
        unsubscribe_hash: str
        unsubscribe_link: str
        def __init__(self, tracking_unit_name: _Optional[str] = ..., program_name: _Optional[str] = ..., program_image: _Optional[str] = ..., mention_date: _Optional[int] = ..., snippets: _Optional[str] = ..., invite_link: _Optional[str] = ..., via: _Optional[str] = ..., logouri: _Optional[str] = ..., creator_email: _Optional[str] = ..., unsubscribe_hash: _Optional[str] = ..., unsubscribe_link: _Optional[str] = ...) -> None: ...
    class PlaceHolders(_message.Message):
        __slots__ = ("tracking_unit_name", "via", "logouri", "mentions")
        TRACKING_UNIT_NAME_FIELD_NUMBER: _ClassVar[int]
        VIA_FIELD_NUMBER: _ClassVar[int]
        LOGOURI_FIELD_NUMBER: _ClassVar[int]
        MENTIONS_FIELD_NUMBER: _ClassVar[int]
        tracking_unit_name: str
        via: str
        logouri: str
        mentions: _containers.RepeatedCompositeFieldContainer[MentionEmailGenerated.Mention]
        def __init__(self, tracking_unit_name: _Optional[str] = ..., via: _Optional[str] = ..., logouri: _Optional[str] = ..., mentions: _Optional[_Iterable[_Union[MentionEmailGenerated.Mention, _Mapping]]] = ...) -> None: ...
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    TO_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PLACE_HOLDERS_FIELD_NUMBER: _ClassVar[int]
    MERGE_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    event: str
    type: str
    service_name: str
    to_email: str
    from_email: str
    from_name: str
    template: str
    place_holders: MentionEmailGenerated.PlaceHolders
    merge_language: str
    def __init__(self, event: _Optional[str] = ..., type: _Optional[str] = ..., service_name: _Optional[str] = ..., to_email: _Optional[str] = ..., from_email: _Optional[str] = ..., from_name: _Optional[str] = ..., template: _Optional[str] = ..., place_holders: _Optional[_Union[MentionEmailGenerated.PlaceHolders, _Mapping]] = ..., merge_language: _Optional[str] = ...) -> None: ...

class MentionInserted(_message.Message):
    __slots__ = ("event", "type", "payload")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    event: str
    type: str
    payload: MentionModifiedData
    def __init__(self, event: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[_Union[MentionModifiedData, _Mapping]] = ...) -> None: ...

class MentionModifiedData(_message.Message):
    __slots__ = ("mention_id", "organization_id", "mention_date", "transaction_timestamp")
    MENTION_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MENTION_DATE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    mention_id: int
    organization_id: int
    mention_date: str
    transaction_timestamp: str
    def __init__(self, mention_id: _Optional[int] = ..., organization_id: _Optional[int] = ..., mention_date: _Optional[str] = ..., transaction_timestamp: _Optional[str] = ...) -> None: ...

class MentionUpdated(_message.Message):
    __slots__ = ("event", "type", "payload")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    event: str
    type: str
    payload: MentionModifiedData
    def __init__(self, event: _Optional[str] = ..., type: _Optional[str] = ..., payload: _Optional[_Union[MentionModifiedData, _Mapping]] = ...) -> None: ...
