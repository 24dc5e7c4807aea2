from clerkindex.v1 import user_index_pb2 as _user_index_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReconcileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECONCILE_KIND_UNSPECIFIED: _ClassVar[ReconcileKind]
    RECONCILE_KIND_CATCH_UP: _ClassVar[ReconcileKind]
    RECONCILE_KIND_SWEEP: _ClassVar[ReconcileKind]
    RECONCILE_KIND_BOTH: _ClassVar[ReconcileKind]
RECONCILE_KIND_UNSPECIFIED: ReconcileKind
RECONCILE_KIND_CATCH_UP: ReconcileKind
RECONCILE_KIND_SWEEP: ReconcileKind
RECONCILE_KIND_BOTH: ReconcileKind

class ReencryptSensitiveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReencryptSensitiveResponse(_message.Message):
    __slots__ = ("users_resealed", "active_key_id", "generation")
    USERS_RESEALED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    users_resealed: int
    active_key_id: str
    generation: int
    def __init__(self, users_resealed: _Optional[int] = ..., active_key_id: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class GetSyncStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncStatus(_message.Message):
    __slots__ = ("freshness", "backfill", "last_catch_up", "last_sweep", "catch_up_watermark_ms", "sweep_in_progress", "webhooks", "writer", "lag_ms", "tombstones", "cluster", "unreadable_users", "clerk")
    FRESHNESS_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    LAST_CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    LAST_SWEEP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_WATERMARK_MS_FIELD_NUMBER: _ClassVar[int]
    SWEEP_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    LAG_MS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_USERS_FIELD_NUMBER: _ClassVar[int]
    CLERK_FIELD_NUMBER: _ClassVar[int]
    freshness: _user_index_pb2.Freshness
    backfill: BackfillStatus
    last_catch_up: ReconcileRun
    last_sweep: ReconcileRun
    catch_up_watermark_ms: int
    sweep_in_progress: bool
    webhooks: WebhookCounts
    writer: WriterCounts
    lag_ms: int
    tombstones: int
    cluster: ClusterStatus
    unreadable_users: int
    clerk: ClerkInstance
    def __init__(self, freshness: _Optional[_Union[_user_index_pb2.Freshness, _Mapping]] = ..., backfill: _Optional[_Union[BackfillStatus, _Mapping]] = ..., last_catch_up: _Optional[_Union[ReconcileRun, _Mapping]] = ..., last_sweep: _Optional[_Union[ReconcileRun, _Mapping]] = ..., catch_up_watermark_ms: _Optional[int] = ..., sweep_in_progress: _Optional[bool] = ..., webhooks: _Optional[_Union[WebhookCounts, _Mapping]] = ..., writer: _Optional[_Union[WriterCounts, _Mapping]] = ..., lag_ms: _Optional[int] = ..., tombstones: _Optional[int] = ..., cluster: _Optional[_Union[ClusterStatus, _Mapping]] = ..., unreadable_users: _Optional[int] = ..., clerk: _Optional[_Union[ClerkInstance, _Mapping]] = ...) -> None: ...

class ClerkInstance(_message.Message):
    __slots__ = ("instance_id", "environment_type", "requests_per_10s")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_10S_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    environment_type: str
    requests_per_10s: int
    def __init__(self, instance_id: _Optional[str] = ..., environment_type: _Optional[str] = ..., requests_per_10s: _Optional[int] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("replica_id", "holds_sync_lease", "sync_lease_holder", "committed_sequence", "log_sequence")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDS_SYNC_LEASE_FIELD_NUMBER: _ClassVar[int]
    SYNC_LEASE_HOLDER_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    holds_sync_lease: bool
    sync_lease_holder: str
    committed_sequence: int
    log_sequence: int
    def __init__(self, replica_id: _Optional[str] = ..., holds_sync_lease: _Optional[bool] = ..., sync_lease_holder: _Optional[str] = ..., committed_sequence: _Optional[int] = ..., log_sequence: _Optional[int] = ...) -> None: ...

class BackfillStatus(_message.Message):
    __slots__ = ("complete", "users_seen", "users_total", "started_at_ms", "completed_at_ms")
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    USERS_SEEN_FIELD_NUMBER: _ClassVar[int]
    USERS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    complete: bool
    users_seen: int
    users_total: int
    started_at_ms: int
    completed_at_ms: int
    def __init__(self, complete: _Optional[bool] = ..., users_seen: _Optional[int] = ..., users_total: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., completed_at_ms: _Optional[int] = ...) -> None: ...

class ReconcileRun(_message.Message):
    __slots__ = ("started_at_ms", "finished_at_ms", "users_listed", "upserts", "deletes", "organizations_listed", "memberships_listed", "organizations_relisted")
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USERS_LISTED_FIELD_NUMBER: _ClassVar[int]
    UPSERTS_FIELD_NUMBER: _ClassVar[int]
    DELETES_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATIONS_LISTED_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIPS_LISTED_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATIONS_RELISTED_FIELD_NUMBER: _ClassVar[int]
    started_at_ms: int
    finished_at_ms: int
    users_listed: int
    upserts: int
    deletes: int
    organizations_listed: int
    memberships_listed: int
    organizations_relisted: int
    def __init__(self, started_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., users_listed: _Optional[int] = ..., upserts: _Optional[int] = ..., deletes: _Optional[int] = ..., organizations_listed: _Optional[int] = ..., memberships_listed: _Optional[int] = ..., organizations_relisted: _Optional[int] = ...) -> None: ...

class WebhookCounts(_message.Message):
    __slots__ = ("applied", "duplicate", "ignored_type", "bad_signature", "malformed", "failed", "foreign_instance")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    IGNORED_TYPE_FIELD_NUMBER: _ClassVar[int]
    BAD_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    applied: int
    duplicate: int
    ignored_type: int
    bad_signature: int
    malformed: int
    failed: int
    foreign_instance: int
    def __init__(self, applied: _Optional[int] = ..., duplicate: _Optional[int] = ..., ignored_type: _Optional[int] = ..., bad_signature: _Optional[int] = ..., malformed: _Optional[int] = ..., failed: _Optional[int] = ..., foreign_instance: _Optional[int] = ...) -> None: ...

class WriterCounts(_message.Message):
    __slots__ = ("applied", "ignored_stale", "ignored_deleted", "commits", "commit_failures", "paused")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_STALE_FIELD_NUMBER: _ClassVar[int]
    IGNORED_DELETED_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FAILURES_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    ignored_stale: int
    ignored_deleted: int
    commits: int
    commit_failures: int
    paused: WriterPause
    def __init__(self, applied: _Optional[int] = ..., ignored_stale: _Optional[int] = ..., ignored_deleted: _Optional[int] = ..., commits: _Optional[int] = ..., commit_failures: _Optional[int] = ..., paused: _Optional[_Union[WriterPause, _Mapping]] = ...) -> None: ...

class WriterPause(_message.Message):
    __slots__ = ("reason", "since_ms")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    since_ms: int
    def __init__(self, reason: _Optional[str] = ..., since_ms: _Optional[int] = ...) -> None: ...

class TriggerReconcileRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: ReconcileKind
    def __init__(self, kind: _Optional[_Union[ReconcileKind, str]] = ...) -> None: ...

class TriggerReconcileResponse(_message.Message):
    __slots__ = ("catch_up", "sweep")
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    SWEEP_FIELD_NUMBER: _ClassVar[int]
    catch_up: ReconcileRun
    sweep: ReconcileRun
    def __init__(self, catch_up: _Optional[_Union[ReconcileRun, _Mapping]] = ..., sweep: _Optional[_Union[ReconcileRun, _Mapping]] = ...) -> None: ...
