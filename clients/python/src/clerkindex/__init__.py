"""clerk-index client: filter, count, facet, export and watch Clerk users by any attribute.

    from clerkindex import Client, field

    with Client("127.0.0.1:50051", api_key="...") as ci:
        print(ci.count(field("public.plan_type") == "pro"))
"""

from .checkpoint import Checkpoint, FileCheckpoint, MemoryCheckpoint
from .client import Client, Export, Page, Stubs, date_histogram, histogram, stats, terms
from .errors import (
    DOMAIN,
    AlreadyExists,
    ClerkIndexError,
    DeadlineExceeded,
    EventsExpired,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    InvalidFilter,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VersionConflict,
)
from .filters import Filter, Path, all_of, any_of, date, field, in_segment, not_, org

__all__ = [
    "Client",
    "Export",
    "Page",
    "Stubs",
    "terms",
    "stats",
    "histogram",
    "date_histogram",
    "Filter",
    "Path",
    "field",
    "all_of",
    "any_of",
    "not_",
    "org",
    "in_segment",
    "date",
    "Checkpoint",
    "FileCheckpoint",
    "MemoryCheckpoint",
    "DOMAIN",
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
]
__version__ = "0.1.0"
