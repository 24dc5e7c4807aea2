from clerkindex.v1 import user_index_pb2 as _user_index_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DestinationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DESTINATION_STATE_UNSPECIFIED: _ClassVar[DestinationState]
    DESTINATION_STATE_ACTIVE: _ClassVar[DestinationState]
    DESTINATION_STATE_PAUSED: _ClassVar[DestinationState]
    DESTINATION_STATE_FAILING: _ClassVar[DestinationState]
    DESTINATION_STATE_GAP: _ClassVar[DestinationState]
DESTINATION_STATE_UNSPECIFIED: DestinationState
DESTINATION_STATE_ACTIVE: DestinationState
DESTINATION_STATE_PAUSED: DestinationState
DESTINATION_STATE_FAILING: DestinationState
DESTINATION_STATE_GAP: DestinationState

class Destination(_message.Message):
    __slots__ = ("name", "url", "segments", "batch_size", "batch_delay_ms", "create_time_ms", "update_time_ms", "state", "delivered_through_sequence", "delivered_events", "last_delivered_time_ms", "failed_attempts", "failing_since_time_ms", "last_error", "next_attempt_time_ms", "resync_pending", "lag_events", "lag_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_THROUGH_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_DELIVERED_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILING_SINCE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RESYNC_PENDING_FIELD_NUMBER: _ClassVar[int]
    LAG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    segments: _containers.RepeatedScalarFieldContainer[str]
    batch_size: int
    batch_delay_ms: int
    create_time_ms: int
    update_time_ms: int
    state: DestinationState
    delivered_through_sequence: int
    delivered_events: int
    last_delivered_time_ms: int
    failed_attempts: int
    failing_since_time_ms: int
    last_error: str
    next_attempt_time_ms: int
    resync_pending: bool
    lag_events: int
    lag_seconds: float
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., segments: _Optional[_Iterable[str]] = ..., batch_size: _Optional[int] = ..., batch_delay_ms: _Optional[int] = ..., create_time_ms: _Optional[int] = ..., update_time_ms: _Optional[int] = ..., state: _Optional[_Union[DestinationState, str]] = ..., delivered_through_sequence: _Optional[int] = ..., delivered_events: _Optional[int] = ..., last_delivered_time_ms: _Optional[int] = ..., failed_attempts: _Optional[int] = ..., failing_since_time_ms: _Optional[int] = ..., last_error: _Optional[str] = ..., next_attempt_time_ms: _Optional[int] = ..., resync_pending: _Optional[bool] = ..., lag_events: _Optional[int] = ..., lag_seconds: _Optional[float] = ...) -> None: ...

class CreateDestinationRequest(_message.Message):
    __slots__ = ("name", "url", "segments", "batch_size", "batch_delay_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    segments: _containers.RepeatedScalarFieldContainer[str]
    batch_size: int
    batch_delay_ms: int
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., segments: _Optional[_Iterable[str]] = ..., batch_size: _Optional[int] = ..., batch_delay_ms: _Optional[int] = ...) -> None: ...

class CreateDestinationResponse(_message.Message):
    __slots__ = ("destination", "signing_secret")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    signing_secret: str
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., signing_secret: _Optional[str] = ...) -> None: ...

class UpdateDestinationRequest(_message.Message):
    __slots__ = ("name", "url", "segments", "batch_size", "batch_delay_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    segments: SegmentNames
    batch_size: int
    batch_delay_ms: int
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., segments: _Optional[_Union[SegmentNames, _Mapping]] = ..., batch_size: _Optional[int] = ..., batch_delay_ms: _Optional[int] = ...) -> None: ...

class SegmentNames(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class ListDestinationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDestinationsResponse(_message.Message):
    __slots__ = ("destinations",)
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    destinations: _containers.RepeatedCompositeFieldContainer[Destination]
    def __init__(self, destinations: _Optional[_Iterable[_Union[Destination, _Mapping]]] = ...) -> None: ...

class PauseDestinationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class ResumeDestinationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class ResyncDestinationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResyncDestinationResponse(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ...) -> None: ...

class RotateDestinationSecretRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RotateDestinationSecretResponse(_message.Message):
    __slots__ = ("destination", "signing_secret")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    destination: Destination
    signing_secret: str
    def __init__(self, destination: _Optional[_Union[Destination, _Mapping]] = ..., signing_secret: _Optional[str] = ...) -> None: ...

class TestDestinationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class TestDestinationResponse(_message.Message):
    __slots__ = ("status_code", "latency_ms", "error")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    latency_ms: int
    error: str
    def __init__(self, status_code: _Optional[int] = ..., latency_ms: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class DeleteDestinationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDestinationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Segment(_message.Message):
    __slots__ = ("name", "description", "filter", "version", "create_time_ms", "update_time_ms", "required_scopes", "warnings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    filter: _user_index_pb2.FilterSpec
    version: int
    create_time_ms: int
    update_time_ms: int
    required_scopes: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedCompositeFieldContainer[_user_index_pb2.FilterWarning]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., filter: _Optional[_Union[_user_index_pb2.FilterSpec, _Mapping]] = ..., version: _Optional[int] = ..., create_time_ms: _Optional[int] = ..., update_time_ms: _Optional[int] = ..., required_scopes: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[_Union[_user_index_pb2.FilterWarning, _Mapping]]] = ...) -> None: ...

class CreateSegmentRequest(_message.Message):
    __slots__ = ("name", "description", "filter")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    filter: _user_index_pb2.FilterSpec
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., filter: _Optional[_Union[_user_index_pb2.FilterSpec, _Mapping]] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ...) -> None: ...

class UpdateSegmentRequest(_message.Message):
    __slots__ = ("name", "description", "filter", "expected_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    filter: _user_index_pb2.FilterSpec
    expected_version: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., filter: _Optional[_Union[_user_index_pb2.FilterSpec, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSegmentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CountSegmentRequest(_message.Message):
    __slots__ = ("name", "min_generation", "min_log_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_generation: int
    min_log_sequence: int
    def __init__(self, name: _Optional[str] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class GetUserSegmentsRequest(_message.Message):
    __slots__ = ("user_id", "min_generation", "min_log_sequence")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    min_generation: int
    min_log_sequence: int
    def __init__(self, user_id: _Optional[str] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class GetUserSegmentsResponse(_message.Message):
    __slots__ = ("segments", "freshness")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedScalarFieldContainer[str]
    freshness: _user_index_pb2.Freshness
    def __init__(self, segments: _Optional[_Iterable[str]] = ..., freshness: _Optional[_Union[_user_index_pb2.Freshness, _Mapping]] = ...) -> None: ...

class GetSegmentHistoryRequest(_message.Message):
    __slots__ = ("name", "granularity")
    class Granularity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        GRANULARITY_UNSPECIFIED: _ClassVar[GetSegmentHistoryRequest.Granularity]
        GRANULARITY_DAY: _ClassVar[GetSegmentHistoryRequest.Granularity]
        GRANULARITY_HOUR: _ClassVar[GetSegmentHistoryRequest.Granularity]
    GRANULARITY_UNSPECIFIED: GetSegmentHistoryRequest.Granularity
    GRANULARITY_DAY: GetSegmentHistoryRequest.Granularity
    GRANULARITY_HOUR: GetSegmentHistoryRequest.Granularity
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANULARITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    granularity: GetSegmentHistoryRequest.Granularity
    def __init__(self, name: _Optional[str] = ..., granularity: _Optional[_Union[GetSegmentHistoryRequest.Granularity, str]] = ...) -> None: ...

class GetSegmentHistoryResponse(_message.Message):
    __slots__ = ("periods", "size")
    PERIODS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    periods: _containers.RepeatedCompositeFieldContainer[SegmentHistoryPeriod]
    size: int
    def __init__(self, periods: _Optional[_Iterable[_Union[SegmentHistoryPeriod, _Mapping]]] = ..., size: _Optional[int] = ...) -> None: ...

class SegmentHistoryPeriod(_message.Message):
    __slots__ = ("start_time_ms", "entered", "exited", "size")
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    start_time_ms: int
    entered: int
    exited: int
    size: int
    def __init__(self, start_time_ms: _Optional[int] = ..., entered: _Optional[int] = ..., exited: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ListSegmentMembersRequest(_message.Message):
    __slots__ = ("name", "fields", "chunk_size", "resume_cursor", "min_generation", "min_log_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    chunk_size: int
    resume_cursor: str
    min_generation: int
    min_log_sequence: int
    def __init__(self, name: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., chunk_size: _Optional[int] = ..., resume_cursor: _Optional[str] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class WatchSegmentRequest(_message.Message):
    __slots__ = ("name", "after_sequence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    after_sequence: int
    def __init__(self, name: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class WatchSegmentsRequest(_message.Message):
    __slots__ = ("names", "after_sequence")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    after_sequence: int
    def __init__(self, names: _Optional[_Iterable[str]] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class SegmentEvent(_message.Message):
    __slots__ = ("sequence", "segment", "kind", "user_id", "change_time_ms", "recorded_at_ms", "cause")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[SegmentEvent.Kind]
        KIND_ENTERED: _ClassVar[SegmentEvent.Kind]
        KIND_EXITED: _ClassVar[SegmentEvent.Kind]
        KIND_SEGMENT_UPDATED: _ClassVar[SegmentEvent.Kind]
        KIND_SEGMENT_DELETED: _ClassVar[SegmentEvent.Kind]
    KIND_UNSPECIFIED: SegmentEvent.Kind
    KIND_ENTERED: SegmentEvent.Kind
    KIND_EXITED: SegmentEvent.Kind
    KIND_SEGMENT_UPDATED: SegmentEvent.Kind
    KIND_SEGMENT_DELETED: SegmentEvent.Kind
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    segment: str
    kind: SegmentEvent.Kind
    user_id: str
    change_time_ms: int
    recorded_at_ms: int
    cause: str
    def __init__(self, sequence: _Optional[int] = ..., segment: _Optional[str] = ..., kind: _Optional[_Union[SegmentEvent.Kind, str]] = ..., user_id: _Optional[str] = ..., change_time_ms: _Optional[int] = ..., recorded_at_ms: _Optional[int] = ..., cause: _Optional[str] = ...) -> None: ...
