"""Typed errors read from the ``google.rpc`` details every clerk-index status carries.

Branch on the class or on ``reason`` (stable, listed in the server's docs/API.md), never on the
message. ``ClerkIndexError.from_rpc_error`` turns any ``grpc.RpcError`` into one of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "clerk-index"

__all__ = [
    "ClerkIndexError",
    "InvalidArgument",
    "InvalidFilter",
    "NotFound",
    "AlreadyExists",
    "VersionConflict",
    "EventsExpired",
    "Unauthenticated",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "DOMAIN",
]


@dataclass
class FieldViolation:
    field: str
    description: str


@dataclass
class _Details:
    reason: str = ""
    domain: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)
    field_violations: List[FieldViolation] = field(default_factory=list)
    resource_type: str = ""
    resource_name: str = ""
    retry_after: Optional[float] = None
    quota: List[str] = field(default_factory=list)
    preconditions: List[str] = field(default_factory=list)


def _status_details(error: grpc.RpcError) -> Sequence[any_pb2.Any]:
    connect = getattr(error, "status_details", None)
    if connect is not None:
        return connect  # a ConnectRpcError from the JSON API
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        # The trailer disagrees with the status line: keep what the status line says.
        return ()
    return status.details if status is not None else ()


def _details(error: grpc.RpcError) -> _Details:
    out = _Details()
    for any_ in _status_details(error):
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            out.field_violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif any_.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            res = error_details_pb2.ResourceInfo()
            any_.Unpack(res)
            out.resource_type, out.resource_name = res.resource_type, res.resource_name
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_.Unpack(retry)
            out.retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        elif any_.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            any_.Unpack(quota)
            out.quota = [v.subject for v in quota.violations]
        elif any_.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pre = error_details_pb2.PreconditionFailure()
            any_.Unpack(pre)
            out.preconditions = [f"{v.type}:{v.subject}" for v in pre.violations]
    return out


class ClerkIndexError(Exception):
    """A call failed. ``code`` is the gRPC status code, ``reason`` the stable ``ErrorInfo`` reason
    (empty when the failure did not come from clerk-index, e.g. a proxy or a broken connection).
    """

    def __init__(self, code: grpc.StatusCode, message: str, details: Optional[_Details] = None):
        super().__init__(f"{code.name}: {message}" if message else code.name)
        d = details or _Details()
        self.code = code
        self.message = message
        self.reason = d.reason if d.domain in ("", DOMAIN) else ""
        self.metadata = d.metadata
        self.field_violations = d.field_violations
        self.resource_type = d.resource_type
        self.resource_name = d.resource_name
        self.retry_after = d.retry_after
        self.quota = d.quota
        self.preconditions = d.preconditions

    @staticmethod
    def from_rpc_error(error: grpc.RpcError) -> "ClerkIndexError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
        message = error.details() if hasattr(error, "details") else str(error)  # type: ignore[attr-defined]
        details = _details(error)
        cls = _BY_REASON.get(details.reason) or _BY_CODE.get(code, ClerkIndexError)
        return cls(code, message or "", details)


class InvalidArgument(ClerkIndexError):
    """A request field is wrong; ``field_violations`` names it."""


class InvalidFilter(InvalidArgument):
    """The filter does not parse or does not fit a field's type; ``position`` is the 0-based
    character offset into the filter text (None for a structured filter)."""

    @property
    def position(self) -> Optional[int]:
        raw = self.metadata.get("position")
        return int(raw) if raw is not None and raw.isdigit() else None


class NotFound(ClerkIndexError):
    """``resource_type`` / ``resource_name`` say what (a user id, a segment name)."""


class AlreadyExists(ClerkIndexError):
    pass


class VersionConflict(ClerkIndexError):
    """``UpdateSegment`` lost to a concurrent edit: read the segment again and retry."""

    @property
    def actual_version(self) -> Optional[int]:
        raw = self.metadata.get("actual_version")
        return int(raw) if raw is not None and raw.isdigit() else None


class EventsExpired(ClerkIndexError):
    """A watch asked to resume from events the server no longer keeps: list the members again."""


class Unauthenticated(ClerkIndexError):
    pass


class PermissionDenied(ClerkIndexError):
    pass


class ResourceExhausted(ClerkIndexError):
    """A budget is full (``quota``) or Clerk rate-limited a write (``retry_after``)."""


class Unavailable(ClerkIndexError):
    """Try again later (``retry_after`` when the server knows how much later)."""


class DeadlineExceeded(ClerkIndexError):
    pass


class FailedPrecondition(ClerkIndexError):
    pass


_BY_REASON = {
    "INVALID_FILTER": InvalidFilter,
    "VERSION_MISMATCH": VersionConflict,
    "EVENTS_EXPIRED": EventsExpired,
}

_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: VersionConflict,
    grpc.StatusCode.OUT_OF_RANGE: EventsExpired,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}
