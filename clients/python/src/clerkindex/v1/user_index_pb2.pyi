from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQ: _ClassVar[Operator]
    OPERATOR_NE: _ClassVar[Operator]
    OPERATOR_LT: _ClassVar[Operator]
    OPERATOR_LTE: _ClassVar[Operator]
    OPERATOR_GT: _ClassVar[Operator]
    OPERATOR_GTE: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]
    OPERATOR_STARTS_WITH: _ClassVar[Operator]
    OPERATOR_MATCHES: _ClassVar[Operator]
    OPERATOR_BETWEEN: _ClassVar[Operator]

class CalendarInterval(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALENDAR_INTERVAL_UNSPECIFIED: _ClassVar[CalendarInterval]
    CALENDAR_INTERVAL_DAY: _ClassVar[CalendarInterval]
    CALENDAR_INTERVAL_WEEK: _ClassVar[CalendarInterval]
    CALENDAR_INTERVAL_MONTH: _ClassVar[CalendarInterval]
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQ: Operator
OPERATOR_NE: Operator
OPERATOR_LT: Operator
OPERATOR_LTE: Operator
OPERATOR_GT: Operator
OPERATOR_GTE: Operator
OPERATOR_IN: Operator
OPERATOR_EXISTS: Operator
OPERATOR_STARTS_WITH: Operator
OPERATOR_MATCHES: Operator
OPERATOR_BETWEEN: Operator
CALENDAR_INTERVAL_UNSPECIFIED: CalendarInterval
CALENDAR_INTERVAL_DAY: CalendarInterval
CALENDAR_INTERVAL_WEEK: CalendarInterval
CALENDAR_INTERVAL_MONTH: CalendarInterval

class Freshness(_message.Message):
    __slots__ = ("generation", "newest_updated_at_ms", "user_count", "log_sequence")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    NEWEST_UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USER_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    generation: int
    newest_updated_at_ms: int
    user_count: int
    log_sequence: int
    def __init__(self, generation: _Optional[int] = ..., newest_updated_at_ms: _Optional[int] = ..., user_count: _Optional[int] = ..., log_sequence: _Optional[int] = ...) -> None: ...

class FilterSpec(_message.Message):
    __slots__ = ("expression", "tree")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    expression: str
    tree: Filter
    def __init__(self, expression: _Optional[str] = ..., tree: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("all", "any", "negate", "predicate", "org", "segment")
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    all: FilterList
    any: FilterList
    negate: Filter
    predicate: Predicate
    org: Filter
    segment: str
    def __init__(self, all: _Optional[_Union[FilterList, _Mapping]] = ..., any: _Optional[_Union[FilterList, _Mapping]] = ..., negate: _Optional[_Union[Filter, _Mapping]] = ..., predicate: _Optional[_Union[Predicate, _Mapping]] = ..., org: _Optional[_Union[Filter, _Mapping]] = ..., segment: _Optional[str] = ...) -> None: ...

class FilterList(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class Predicate(_message.Message):
    __slots__ = ("path", "op", "values")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    path: str
    op: Operator
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, path: _Optional[str] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("string", "integer", "number", "boolean", "null", "date", "date_ms")
    STRING_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    NULL_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    DATE_MS_FIELD_NUMBER: _ClassVar[int]
    string: str
    integer: int
    number: float
    boolean: bool
    null: bool
    date: str
    date_ms: int
    def __init__(self, string: _Optional[str] = ..., integer: _Optional[int] = ..., number: _Optional[float] = ..., boolean: _Optional[bool] = ..., null: _Optional[bool] = ..., date: _Optional[str] = ..., date_ms: _Optional[int] = ...) -> None: ...

class SortSpec(_message.Message):
    __slots__ = ("path", "descending")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    path: str
    descending: bool
    def __init__(self, path: _Optional[str] = ..., descending: _Optional[bool] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    json: str
    def __init__(self, id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("user_id", "fields", "min_generation", "min_log_sequence")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    min_generation: int
    min_log_sequence: int
    def __init__(self, user_id: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class GetUserResponse(_message.Message):
    __slots__ = ("user", "freshness")
    USER_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    user: User
    freshness: Freshness
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class SearchUsersRequest(_message.Message):
    __slots__ = ("filter", "sort", "page_size", "page_token", "fields", "min_generation", "min_log_sequence")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    filter: FilterSpec
    sort: SortSpec
    page_size: int
    page_token: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    min_generation: int
    min_log_sequence: int
    def __init__(self, filter: _Optional[_Union[FilterSpec, _Mapping]] = ..., sort: _Optional[_Union[SortSpec, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class SearchUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token", "freshness")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    next_page_token: str
    freshness: Freshness
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class CountUsersRequest(_message.Message):
    __slots__ = ("filter", "min_generation", "min_log_sequence")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    filter: FilterSpec
    min_generation: int
    min_log_sequence: int
    def __init__(self, filter: _Optional[_Union[FilterSpec, _Mapping]] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class UpdateUserMetadataRequest(_message.Message):
    __slots__ = ("user_id", "public_metadata", "private_metadata", "unsafe_metadata", "fields")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    UNSAFE_METADATA_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    public_metadata: str
    private_metadata: str
    unsafe_metadata: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_id: _Optional[str] = ..., public_metadata: _Optional[str] = ..., private_metadata: _Optional[str] = ..., unsafe_metadata: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateUserMetadataResponse(_message.Message):
    __slots__ = ("user", "freshness")
    USER_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    user: User
    freshness: Freshness
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class UpdateOrganizationMetadataRequest(_message.Message):
    __slots__ = ("organization_id", "public_metadata", "private_metadata")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    public_metadata: str
    private_metadata: str
    def __init__(self, organization_id: _Optional[str] = ..., public_metadata: _Optional[str] = ..., private_metadata: _Optional[str] = ...) -> None: ...

class UpdateOrganizationMetadataResponse(_message.Message):
    __slots__ = ("organization_json", "freshness")
    ORGANIZATION_JSON_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    organization_json: str
    freshness: Freshness
    def __init__(self, organization_json: _Optional[str] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class CountUsersResponse(_message.Message):
    __slots__ = ("count", "freshness")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    count: int
    freshness: Freshness
    def __init__(self, count: _Optional[int] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class FacetUsersRequest(_message.Message):
    __slots__ = ("filter", "facets", "min_generation", "min_log_sequence")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FACETS_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    filter: FilterSpec
    facets: _containers.RepeatedCompositeFieldContainer[FacetRequest]
    min_generation: int
    min_log_sequence: int
    def __init__(self, filter: _Optional[_Union[FilterSpec, _Mapping]] = ..., facets: _Optional[_Iterable[_Union[FacetRequest, _Mapping]]] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class FacetRequest(_message.Message):
    __slots__ = ("name", "path", "terms", "stats", "histogram", "date_histogram")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    DATE_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    terms: TermsFacet
    stats: NumericStatsFacet
    histogram: HistogramFacet
    date_histogram: DateHistogramFacet
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., terms: _Optional[_Union[TermsFacet, _Mapping]] = ..., stats: _Optional[_Union[NumericStatsFacet, _Mapping]] = ..., histogram: _Optional[_Union[HistogramFacet, _Mapping]] = ..., date_histogram: _Optional[_Union[DateHistogramFacet, _Mapping]] = ...) -> None: ...

class TermsFacet(_message.Message):
    __slots__ = ("size", "include_missing")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MISSING_FIELD_NUMBER: _ClassVar[int]
    size: int
    include_missing: bool
    def __init__(self, size: _Optional[int] = ..., include_missing: _Optional[bool] = ...) -> None: ...

class NumericStatsFacet(_message.Message):
    __slots__ = ("percentiles",)
    PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    percentiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, percentiles: _Optional[_Iterable[float]] = ...) -> None: ...

class HistogramFacet(_message.Message):
    __slots__ = ("interval", "offset")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    interval: float
    offset: float
    def __init__(self, interval: _Optional[float] = ..., offset: _Optional[float] = ...) -> None: ...

class DateHistogramFacet(_message.Message):
    __slots__ = ("interval",)
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    interval: CalendarInterval
    def __init__(self, interval: _Optional[_Union[CalendarInterval, str]] = ...) -> None: ...

class FacetUsersResponse(_message.Message):
    __slots__ = ("matched", "facets", "freshness")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    FACETS_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    matched: int
    facets: _containers.RepeatedCompositeFieldContainer[FacetResult]
    freshness: Freshness
    def __init__(self, matched: _Optional[int] = ..., facets: _Optional[_Iterable[_Union[FacetResult, _Mapping]]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class FacetResult(_message.Message):
    __slots__ = ("name", "path", "terms", "stats", "histogram", "date_histogram")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    DATE_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    terms: TermsResult
    stats: NumericStats
    histogram: HistogramResult
    date_histogram: HistogramResult
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., terms: _Optional[_Union[TermsResult, _Mapping]] = ..., stats: _Optional[_Union[NumericStats, _Mapping]] = ..., histogram: _Optional[_Union[HistogramResult, _Mapping]] = ..., date_histogram: _Optional[_Union[HistogramResult, _Mapping]] = ...) -> None: ...

class TermsResult(_message.Message):
    __slots__ = ("buckets", "other_count", "distinct_values", "distinct_values_exact", "missing")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    OTHER_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_VALUES_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_VALUES_EXACT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[TermBucket]
    other_count: int
    distinct_values: int
    distinct_values_exact: bool
    missing: int
    def __init__(self, buckets: _Optional[_Iterable[_Union[TermBucket, _Mapping]]] = ..., other_count: _Optional[int] = ..., distinct_values: _Optional[int] = ..., distinct_values_exact: _Optional[bool] = ..., missing: _Optional[int] = ...) -> None: ...

class TermBucket(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: Value
    count: int
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class NumericStats(_message.Message):
    __slots__ = ("count", "min", "max", "avg", "sum", "percentiles")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    AVG_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    count: int
    min: float
    max: float
    avg: float
    sum: float
    percentiles: _containers.RepeatedCompositeFieldContainer[Percentile]
    def __init__(self, count: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., avg: _Optional[float] = ..., sum: _Optional[float] = ..., percentiles: _Optional[_Iterable[_Union[Percentile, _Mapping]]] = ...) -> None: ...

class Percentile(_message.Message):
    __slots__ = ("percent", "value")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    percent: float
    value: float
    def __init__(self, percent: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class HistogramResult(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[HistogramBucket]
    def __init__(self, buckets: _Optional[_Iterable[_Union[HistogramBucket, _Mapping]]] = ...) -> None: ...

class HistogramBucket(_message.Message):
    __slots__ = ("key", "key_as_string", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_AS_STRING_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: float
    key_as_string: str
    count: int
    def __init__(self, key: _Optional[float] = ..., key_as_string: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ExportUsersRequest(_message.Message):
    __slots__ = ("filter", "fields", "chunk_size", "resume_cursor", "min_generation", "ids_only", "min_log_sequence")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    IDS_ONLY_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    filter: FilterSpec
    fields: _containers.RepeatedScalarFieldContainer[str]
    chunk_size: int
    resume_cursor: str
    min_generation: int
    ids_only: bool
    min_log_sequence: int
    def __init__(self, filter: _Optional[_Union[FilterSpec, _Mapping]] = ..., fields: _Optional[_Iterable[str]] = ..., chunk_size: _Optional[int] = ..., resume_cursor: _Optional[str] = ..., min_generation: _Optional[int] = ..., ids_only: _Optional[bool] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class ExportUsersResponse(_message.Message):
    __slots__ = ("users", "ids", "cursor", "total", "freshness", "event_sequence")
    USERS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    ids: _containers.RepeatedScalarFieldContainer[str]
    cursor: str
    total: int
    freshness: Freshness
    event_sequence: int
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ..., ids: _Optional[_Iterable[str]] = ..., cursor: _Optional[str] = ..., total: _Optional[int] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ..., event_sequence: _Optional[int] = ...) -> None: ...

class DescribeCallerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeCallerResponse(_message.Message):
    __slots__ = ("key_name", "scopes")
    KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    key_name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key_name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeFieldsRequest(_message.Message):
    __slots__ = ("path_prefix", "min_generation", "min_log_sequence")
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    MIN_GENERATION_FIELD_NUMBER: _ClassVar[int]
    MIN_LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    path_prefix: str
    min_generation: int
    min_log_sequence: int
    def __init__(self, path_prefix: _Optional[str] = ..., min_generation: _Optional[int] = ..., min_log_sequence: _Optional[int] = ...) -> None: ...

class DescribeFieldsResponse(_message.Message):
    __slots__ = ("fields", "core_fields", "freshness")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[FieldDescription]
    core_fields: _containers.RepeatedCompositeFieldContainer[CoreFieldDescription]
    freshness: Freshness
    def __init__(self, fields: _Optional[_Iterable[_Union[FieldDescription, _Mapping]]] = ..., core_fields: _Optional[_Iterable[_Union[CoreFieldDescription, _Mapping]]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class FieldDescription(_message.Message):
    __slots__ = ("path", "types", "type_conflict")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    TYPE_CONFLICT_FIELD_NUMBER: _ClassVar[int]
    path: str
    types: _containers.RepeatedCompositeFieldContainer[TypeCount]
    type_conflict: bool
    def __init__(self, path: _Optional[str] = ..., types: _Optional[_Iterable[_Union[TypeCount, _Mapping]]] = ..., type_conflict: _Optional[bool] = ...) -> None: ...

class TypeCount(_message.Message):
    __slots__ = ("type", "users")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    type: str
    users: int
    def __init__(self, type: _Optional[str] = ..., users: _Optional[int] = ...) -> None: ...

class ValidateFilterRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: FilterSpec
    def __init__(self, filter: _Optional[_Union[FilterSpec, _Mapping]] = ...) -> None: ...

class ValidateFilterResponse(_message.Message):
    __slots__ = ("expression", "tree", "required_scopes", "time_driven", "warnings", "freshness")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TREE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_SCOPES_FIELD_NUMBER: _ClassVar[int]
    TIME_DRIVEN_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    expression: str
    tree: Filter
    required_scopes: _containers.RepeatedScalarFieldContainer[str]
    time_driven: bool
    warnings: _containers.RepeatedCompositeFieldContainer[FilterWarning]
    freshness: Freshness
    def __init__(self, expression: _Optional[str] = ..., tree: _Optional[_Union[Filter, _Mapping]] = ..., required_scopes: _Optional[_Iterable[str]] = ..., time_driven: _Optional[bool] = ..., warnings: _Optional[_Iterable[_Union[FilterWarning, _Mapping]]] = ..., freshness: _Optional[_Union[Freshness, _Mapping]] = ...) -> None: ...

class FilterWarning(_message.Message):
    __slots__ = ("code", "path", "position", "message", "suggestions")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[FilterWarning.Code]
        CODE_UNKNOWN_PATH: _ClassVar[FilterWarning.Code]
        CODE_TYPE_MISMATCH: _ClassVar[FilterWarning.Code]
        CODE_TIME_DRIVEN: _ClassVar[FilterWarning.Code]
    CODE_UNSPECIFIED: FilterWarning.Code
    CODE_UNKNOWN_PATH: FilterWarning.Code
    CODE_TYPE_MISMATCH: FilterWarning.Code
    CODE_TIME_DRIVEN: FilterWarning.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    code: FilterWarning.Code
    path: str
    position: int
    message: str
    suggestions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, code: _Optional[_Union[FilterWarning.Code, str]] = ..., path: _Optional[str] = ..., position: _Optional[int] = ..., message: _Optional[str] = ..., suggestions: _Optional[_Iterable[str]] = ...) -> None: ...

class CoreFieldDescription(_message.Message):
    __slots__ = ("path", "kind", "sortable", "facetable", "users")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SORTABLE_FIELD_NUMBER: _ClassVar[int]
    FACETABLE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: str
    sortable: bool
    facetable: bool
    users: int
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[str] = ..., sortable: _Optional[bool] = ..., facetable: _Optional[bool] = ..., users: _Optional[int] = ...) -> None: ...
