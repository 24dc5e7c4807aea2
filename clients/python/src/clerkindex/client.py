"""The clerk-index client: one object per server, methods for every call, with paging, export
resume, watch checkpoints, read-your-writes and typed errors built in."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

import grpc

from .checkpoint import Checkpoint
from .connect import ConnectSession, ConnectStub
from .errors import ClerkIndexError
from .filters import FilterLike, to_spec
from .v1 import segments_pb2, segments_pb2_grpc, sync_pb2, sync_pb2_grpc
from .v1 import user_index_pb2 as pb
from .v1 import user_index_pb2_grpc

__all__ = ["Client", "Page", "Export", "Stubs", "terms", "stats", "histogram", "date_histogram"]

# Stream failures worth resuming from the last cursor or sequence: the connection or the server
# went away, or a budget was briefly full.
_RESUMABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class Page:
    users: List[Dict[str, Any]]
    next_page_token: str
    freshness: pb.Freshness


@dataclass
class Stubs:
    """The generated stubs (or, over the JSON API, ``ConnectStub``s with the same methods), for
    anything the methods do not cover."""

    user_index: Any
    segments: Any
    sync: Any


_SERVICES = (
    pb.DESCRIPTOR.services_by_name["UserIndex"],
    segments_pb2.DESCRIPTOR.services_by_name["Segments"],
    sync_pb2.DESCRIPTOR.services_by_name["Sync"],
)


def _target(server: str) -> "tuple[str, bool]":
    for scheme, secure in (("https://", True), ("http://", False)):
        if server.startswith(scheme):
            return server[len(scheme) :].rstrip("/"), secure
    return server, False


def _sort(sort: Optional[str]) -> Optional[pb.SortSpec]:
    if not sort:
        return None
    if sort.startswith("-"):
        return pb.SortSpec(path=sort[1:], descending=True)
    return pb.SortSpec(path=sort)


def terms(path: str, size: int = 10, *, include_missing: bool = False, name: str = "") -> pb.FacetRequest:
    """Counts per distinct value, most frequent first."""
    return pb.FacetRequest(name=name, path=path, terms=pb.TermsFacet(size=size, include_missing=include_missing))


def stats(path: str, percentiles: Sequence[float] = (), *, name: str = "") -> pb.FacetRequest:
    """count, min, max, avg, sum and percentiles of a numeric path."""
    return pb.FacetRequest(name=name, path=path, stats=pb.NumericStatsFacet(percentiles=list(percentiles)))


def histogram(path: str, interval: float, offset: float = 0.0, *, name: str = "") -> pb.FacetRequest:
    return pb.FacetRequest(name=name, path=path, histogram=pb.HistogramFacet(interval=interval, offset=offset))


_CALENDAR = {
    "day": pb.CALENDAR_INTERVAL_DAY,
    "week": pb.CALENDAR_INTERVAL_WEEK,
    "month": pb.CALENDAR_INTERVAL_MONTH,
}


def date_histogram(path: str, interval: str = "month", *, name: str = "") -> pb.FacetRequest:
    """Buckets of calendar days, ISO weeks or months (UTC)."""
    if interval not in _CALENDAR:
        raise ValueError(f"interval is one of {sorted(_CALENDAR)}, not {interval!r}")
    return pb.FacetRequest(name=name, path=path, date_histogram=pb.DateHistogramFacet(interval=_CALENDAR[interval]))


class Export:
    """The users (dicts, or ids with ``ids_only``) of an export, resumed from the last chunk's
    cursor when the stream breaks. ``total`` and ``freshness`` come from the first chunk;
    ``cursor`` is where a later export could resume; ``resumes`` counts the automatic resumes."""

    def __init__(self, client: "Client", request: Any, segment: Optional[str], retries: int):
        self._client = client
        self._request = request
        self._segment = segment
        self._retries = retries
        self.total: Optional[int] = None
        self.freshness: Optional[pb.Freshness] = None
        self.event_sequence: Optional[int] = None
        self.cursor: str = request.resume_cursor
        self.resumes = 0

    def _open(self):
        self._request.resume_cursor = self.cursor
        stubs, md = self._client.stubs, self._client._metadata
        if self._segment is not None:
            return stubs.segments.ListSegmentMembers(self._request, metadata=md)
        return stubs.user_index.ExportUsers(self._request, metadata=md)

    def __iter__(self) -> Iterator[Any]:
        failures = 0
        while True:
            try:
                for chunk in self._open():
                    if self.total is None:
                        self.total, self.freshness = chunk.total, chunk.freshness
                        self.event_sequence = chunk.event_sequence
                    if chunk.ids:
                        yield from chunk.ids
                    else:
                        for user in chunk.users:
                            yield json.loads(user.json)
                    if chunk.cursor:
                        self.cursor = chunk.cursor
                    failures = 0
                return
            except grpc.RpcError as e:
                failures += 1
                if e.code() not in _RESUMABLE or failures > self._retries:
                    raise ClerkIndexError.from_rpc_error(e) from e
                self.resumes += 1
                _backoff(failures)


def _backoff(failures: int) -> None:
    delay = min(5.0, 0.1 * 2 ** (failures - 1))
    time.sleep(delay * random.uniform(0.5, 1.0))


class Client:
    """A connection to one clerk-index server.

    ``server`` is ``host:port``, ``http://host:port`` or ``https://host:port`` (TLS; pass
    ``root_certificates`` for a private CA). With ``protocol="grpc"`` (the default) it is the
    gRPC port, and requests are gzip-compressed and responses accepted compressed. With
    ``protocol="connect"`` it is the HTTP port, called with JSON bodies in the Connect protocol
    over HTTP/1.1 (only the standard library; through proxies that do not pass HTTP/2); every
    method works the same over both. With ``read_your_writes`` (the default) every read after a
    write through this client waits for a snapshot that holds the write.
    """

    def __init__(
        self,
        server: str = "127.0.0.1:50051",
        api_key: Optional[str] = None,
        *,
        root_certificates: Optional[bytes] = None,
        timeout: float = 30.0,
        read_your_writes: bool = True,
        options: Sequence["tuple[str, Any]"] = (),
        protocol: str = "grpc",
    ):
        self._metadata = (("authorization", f"Bearer {api_key.strip()}"),) if api_key else ()
        self.timeout = timeout
        self.read_your_writes = read_your_writes
        self.min_generation = 0
        self.min_log_sequence = 0
        if protocol == "connect":
            if options:
                raise ValueError("options are gRPC channel options; the connect protocol takes none")
            secure = server.startswith("https://") or root_certificates is not None
            base = server if "://" in server else ("https://" if secure else "http://") + server
            session = ConnectSession(base, root_certificates)
            self._close = session.close
            self.stubs = Stubs(*(ConnectStub(session, service) for service in _SERVICES))
            return
        if protocol != "grpc":
            raise ValueError(f"protocol is 'grpc' or 'connect', not {protocol!r}")
        target, secure = _target(server)
        # Messages up to 64 MiB (gRPC's default is 4 MiB; an export chunk of full users can pass it).
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024), *options]
        if secure or root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            channel = grpc.secure_channel(target, creds, options=options, compression=grpc.Compression.Gzip)
        else:
            channel = grpc.insecure_channel(target, options=options, compression=grpc.Compression.Gzip)
        self._close = channel.close
        self.stubs = Stubs(
            user_index_pb2_grpc.UserIndexStub(channel),
            segments_pb2_grpc.SegmentsStub(channel),
            sync_pb2_grpc.SyncStub(channel),
        )

    def close(self) -> None:
        self._close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ClerkIndexError.from_rpc_error(e) from e

    def _fresh(self) -> Dict[str, int]:
        if not self.read_your_writes:
            return {}
        return {"min_generation": self.min_generation, "min_log_sequence": self.min_log_sequence}

    def _wrote(self, freshness: pb.Freshness) -> None:
        self.min_generation = max(self.min_generation, freshness.generation)
        self.min_log_sequence = max(self.min_log_sequence, freshness.log_sequence)

    # -- users ----------------------------------------------------------------------------------

    def count(self, filter: FilterLike = None) -> int:
        """How many users match (every user for None)."""
        request = pb.CountUsersRequest(filter=to_spec(filter), **self._fresh())
        return self._call(self.stubs.user_index.CountUsers, request).count

    def get_user(self, user_id: str, fields: Sequence[str] = ()) -> Dict[str, Any]:
        """The Clerk user as JSON, reduced to ``fields`` when given. Raises NotFound."""
        request = pb.GetUserRequest(user_id=user_id, fields=list(fields), **self._fresh())
        return json.loads(self._call(self.stubs.user_index.GetUser, request).user.json)

    def search_page(
        self,
        filter: FilterLike = None,
        *,
        sort: Optional[str] = None,
        fields: Sequence[str] = (),
        page_size: int = 100,
        page_token: str = "",
    ) -> Page:
        """One page; ``sort`` is a path, ``-path`` for descending."""
        request = pb.SearchUsersRequest(
            filter=to_spec(filter),
            sort=_sort(sort),
            fields=list(fields),
            page_size=page_size,
            page_token=page_token,
            **self._fresh(),
        )
        response = self._call(self.stubs.user_index.SearchUsers, request)
        users = [json.loads(u.json) for u in response.users]
        return Page(users, response.next_page_token, response.freshness)

    def search(
        self,
        filter: FilterLike = None,
        *,
        sort: Optional[str] = None,
        fields: Sequence[str] = (),
        page_size: int = 100,
        limit: Optional[int] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Every matching user (or the first ``limit``), following pages as you iterate."""
        token, seen = "", 0
        while True:
            page = self.search_page(filter, sort=sort, fields=fields, page_size=page_size, page_token=token)
            for user in page.users:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield user
            token = page.next_page_token
            if not token:
                return

    def facet(self, filter: FilterLike = None, *facets: pb.FacetRequest) -> pb.FacetUsersResponse:
        """Facets (``terms``, ``stats``, ``histogram``, ``date_histogram``) of the matching users."""
        request = pb.FacetUsersRequest(filter=to_spec(filter), facets=list(facets), **self._fresh())
        return self._call(self.stubs.user_index.FacetUsers, request)

    def describe_fields(self, path_prefix: str = "") -> pb.DescribeFieldsResponse:
        request = pb.DescribeFieldsRequest(path_prefix=path_prefix, **self._fresh())
        return self._call(self.stubs.user_index.DescribeFields, request)

    def describe_caller(self) -> pb.DescribeCallerResponse:
        """The key this client uses: its ``key_name`` and ``scopes`` (what it may do)."""
        return self._call(self.stubs.user_index.DescribeCaller, pb.DescribeCallerRequest())

    def validate_filter(self, filter: FilterLike) -> pb.ValidateFilterResponse:
        """The filter checked without running it: its normalized ``expression`` and ``tree``, the
        ``required_scopes``, ``time_driven``, and ``warnings`` (paths no user holds, with
        ``suggestions``; values of a type the path never holds; relative times). Raises
        InvalidFilter for a filter that does not parse."""
        request = pb.ValidateFilterRequest(filter=to_spec(filter))
        return self._call(self.stubs.user_index.ValidateFilter, request)

    def export(
        self,
        filter: FilterLike = None,
        *,
        fields: Sequence[str] = (),
        ids_only: bool = False,
        chunk_size: int = 1000,
        resume_cursor: str = "",
        retries: int = 5,
    ) -> Export:
        """Every matching user in id order from one snapshot; a broken stream is resumed from its
        last cursor (up to ``retries`` times in a row without progress)."""
        request = pb.ExportUsersRequest(
            filter=to_spec(filter),
            fields=list(fields),
            ids_only=ids_only,
            chunk_size=chunk_size,
            resume_cursor=resume_cursor,
            **self._fresh(),
        )
        return Export(self, request, None, retries)

    def update_metadata(
        self,
        user_id: str,
        *,
        public: Optional[Dict[str, Any]] = None,
        private: Optional[Dict[str, Any]] = None,
        unsafe: Optional[Dict[str, Any]] = None,
        fields: Sequence[str] = (),
    ) -> Dict[str, Any]:
        """Deep-merge metadata into the user in Clerk; the index holds the change on return."""
        kwargs = {}
        for name, value in (("public_metadata", public), ("private_metadata", private), ("unsafe_metadata", unsafe)):
            if value is not None:
                kwargs[name] = json.dumps(value)
        request = pb.UpdateUserMetadataRequest(user_id=user_id, fields=list(fields), **kwargs)
        response = self._call(self.stubs.user_index.UpdateUserMetadata, request)
        self._wrote(response.freshness)
        return json.loads(response.user.json)

    def update_organization_metadata(
        self,
        organization_id: str,
        *,
        public: Optional[Dict[str, Any]] = None,
        private: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Deep-merge metadata into the organization in Clerk; every member's ``org.public.*`` and
        ``org.private.*`` read the change on return."""
        kwargs = {}
        for name, value in (("public_metadata", public), ("private_metadata", private)):
            if value is not None:
                kwargs[name] = json.dumps(value)
        request = pb.UpdateOrganizationMetadataRequest(organization_id=organization_id, **kwargs)
        response = self._call(self.stubs.user_index.UpdateOrganizationMetadata, request)
        self._wrote(response.freshness)
        return json.loads(response.organization_json)

    # -- segments -------------------------------------------------------------------------------

    def create_segment(self, name: str, filter: FilterLike, description: str = "") -> segments_pb2.Segment:
        request = segments_pb2.CreateSegmentRequest(name=name, description=description, filter=to_spec(filter))
        return self._call(self.stubs.segments.CreateSegment, request)

    def get_segment(self, name: str) -> segments_pb2.Segment:
        return self._call(self.stubs.segments.GetSegment, segments_pb2.GetSegmentRequest(name=name))

    def list_segments(self) -> List[segments_pb2.Segment]:
        return list(self._call(self.stubs.segments.ListSegments, segments_pb2.ListSegmentsRequest()).segments)

    def update_segment(
        self,
        name: str,
        *,
        filter: FilterLike = None,
        description: Optional[str] = None,
        expected_version: int = 0,
    ) -> segments_pb2.Segment:
        """Change a segment; with ``expected_version`` a concurrent edit raises VersionConflict."""
        request = segments_pb2.UpdateSegmentRequest(name=name, filter=to_spec(filter), expected_version=expected_version)
        if description is not None:
            request.description = description
        return self._call(self.stubs.segments.UpdateSegment, request)

    def delete_segment(self, name: str) -> None:
        self._call(self.stubs.segments.DeleteSegment, segments_pb2.DeleteSegmentRequest(name=name))

    def count_segment(self, name: str) -> int:
        request = segments_pb2.CountSegmentRequest(name=name, **self._fresh())
        return self._call(self.stubs.segments.CountSegment, request).count

    def segment_history(self, name: str, *, hourly: bool = False) -> segments_pb2.GetSegmentHistoryResponse:
        """The segment's ``size`` now and its ``periods`` (UTC days, or hours for the last week):
        ``start_time_ms``, ``entered``, ``exited`` and ``size`` at the end of each."""
        granularity = (
            segments_pb2.GetSegmentHistoryRequest.GRANULARITY_HOUR
            if hourly
            else segments_pb2.GetSegmentHistoryRequest.GRANULARITY_DAY
        )
        request = segments_pb2.GetSegmentHistoryRequest(name=name, granularity=granularity)
        return self._call(self.stubs.segments.GetSegmentHistory, request)

    def user_segments(self, user_id: str) -> List[str]:
        """The names of the saved segments the user is in now (of those this key may read)."""
        request = segments_pb2.GetUserSegmentsRequest(user_id=user_id, **self._fresh())
        return list(self._call(self.stubs.segments.GetUserSegments, request).segments)

    def segment_members(
        self, name: str, *, fields: Sequence[str] = (), chunk_size: int = 1000, resume_cursor: str = "", retries: int = 5
    ) -> Export:
        """The segment's members, as ``export`` streams them."""
        request = segments_pb2.ListSegmentMembersRequest(
            name=name, fields=list(fields), chunk_size=chunk_size, resume_cursor=resume_cursor, **self._fresh()
        )
        return Export(self, request, name, retries)

    def watch(
        self,
        segment: str,
        *,
        checkpoint: Optional[Checkpoint] = None,
        after: Optional[int] = None,
        retries: int = 10,
    ) -> Iterator[segments_pb2.SegmentEvent]:
        """The segment's Entered/Exited events, reconnecting after a broken stream.

        Resumes after ``checkpoint``'s sequence when it holds one, else after ``after``, else
        from now on. An event is saved to ``checkpoint`` when you ask for the next one, so a
        program that dies while handling an event sees it again (at least once). Ends after
        the segment is deleted; raises EventsExpired when the server no longer holds the events
        after the checkpoint (list the members again, then watch from the export's
        ``event_sequence``).
        """
        return self._follow(self.stubs.segments.WatchSegment, {"name": segment}, 1, checkpoint, after, retries)

    def watch_many(
        self,
        segments: Sequence[str] = (),
        *,
        checkpoint: Optional[Checkpoint] = None,
        after: Optional[int] = None,
        retries: int = 10,
    ) -> Iterator[segments_pb2.SegmentEvent]:
        """``watch`` over several segments on one stream, in sequence order; with no names, every
        segment this key may read (ones created later included). Ends after the last named
        segment is deleted (never, for every readable segment)."""
        names = list(segments)
        ends_after = len(names) if names else None
        return self._follow(self.stubs.segments.WatchSegments, {"names": names}, ends_after, checkpoint, after, retries)

    def _follow(
        self,
        method: Any,
        fields: Dict[str, Any],
        ends_after: Optional[int],
        checkpoint: Optional[Checkpoint],
        after: Optional[int],
        retries: int,
    ) -> Iterator[segments_pb2.SegmentEvent]:
        last = checkpoint.load() if checkpoint is not None else None
        if last is None:
            last = after
        failures = 0
        deleted: set = set()
        request_type = segments_pb2.WatchSegmentRequest if "name" in fields else segments_pb2.WatchSegmentsRequest
        while True:
            if fields.get("names"):
                # Resuming: the segments deleted meanwhile are gone from the server.
                fields = {"names": [n for n in fields["names"] if n not in deleted]}
            request = request_type(**fields)
            if last is not None:
                request.after_sequence = last
            try:
                for event in method(request, metadata=self._metadata):
                    failures = 0
                    yield event
                    last = event.sequence
                    if checkpoint is not None:
                        checkpoint.save(event.sequence)
                    if event.kind == segments_pb2.SegmentEvent.KIND_SEGMENT_DELETED:
                        deleted.add(event.segment)
                        if ends_after is not None and len(deleted) >= ends_after:
                            return
            except grpc.RpcError as e:
                failures += 1
                if e.code() not in _RESUMABLE or failures > retries:
                    raise ClerkIndexError.from_rpc_error(e) from e
            else:
                # The server ended the stream without a deletion (it is shutting down): resume.
                failures += 1
                if failures > retries:
                    return
            _backoff(failures)

    # -- destinations ---------------------------------------------------------------------------

    def create_destination(
        self,
        name: str,
        url: str,
        segments: Sequence[str],
        *,
        batch_size: int = 0,
        batch_delay_ms: int = 0,
    ) -> "tuple[segments_pb2.Destination, str]":
        """A webhook receiver for the segments' events; returns it and its signing secret
        (``whsec_...``), which is shown only now: verify deliveries with Svix's or Standard
        Webhooks' libraries. Zero batch values take the server's defaults."""
        request = segments_pb2.CreateDestinationRequest(
            name=name, url=url, segments=list(segments), batch_size=batch_size, batch_delay_ms=batch_delay_ms
        )
        response = self._call(self.stubs.segments.CreateDestination, request)
        return response.destination, response.signing_secret

    def list_destinations(self) -> List[segments_pb2.Destination]:
        """Every destination with its state, position, counts, last error and lag."""
        request = segments_pb2.ListDestinationsRequest()
        return list(self._call(self.stubs.segments.ListDestinations, request).destinations)

    def update_destination(
        self,
        name: str,
        *,
        url: Optional[str] = None,
        segments: Optional[Sequence[str]] = None,
        batch_size: Optional[int] = None,
        batch_delay_ms: Optional[int] = None,
    ) -> segments_pb2.Destination:
        """Change what is given (the URL, the segments followed, the batching); the position and
        the secret are kept, and a new URL starts its retries over."""
        request = segments_pb2.UpdateDestinationRequest(name=name)
        if url is not None:
            request.url = url
        if segments is not None:
            request.segments.names.extend(segments)
            request.segments.SetInParent()
        if batch_size is not None:
            request.batch_size = batch_size
        if batch_delay_ms is not None:
            request.batch_delay_ms = batch_delay_ms
        return self._call(self.stubs.segments.UpdateDestination, request).destination

    def pause_destination(self, name: str) -> segments_pb2.Destination:
        request = segments_pb2.PauseDestinationRequest(name=name)
        return self._call(self.stubs.segments.PauseDestination, request).destination

    def resume_destination(self, name: str) -> segments_pb2.Destination:
        """Deliver again from where it stopped (paused or failing; a gap needs a resync)."""
        request = segments_pb2.ResumeDestinationRequest(name=name)
        return self._call(self.stubs.segments.ResumeDestination, request).destination

    def resync_destination(self, name: str) -> segments_pb2.Destination:
        """Send the segments' current members as a snapshot, then the events after it."""
        request = segments_pb2.ResyncDestinationRequest(name=name)
        return self._call(self.stubs.segments.ResyncDestination, request).destination

    def rotate_destination_secret(self, name: str) -> str:
        """A new signing secret (returned, shown only now); the old one signs too for a day."""
        request = segments_pb2.RotateDestinationSecretRequest(name=name)
        return self._call(self.stubs.segments.RotateDestinationSecret, request).signing_secret

    def test_destination(self, name: str) -> segments_pb2.TestDestinationResponse:
        """POSTs a signed ``destination.test`` message once: ``status_code``, ``latency_ms``,
        ``error``."""
        request = segments_pb2.TestDestinationRequest(name=name)
        return self._call(self.stubs.segments.TestDestination, request)

    def delete_destination(self, name: str) -> None:
        request = segments_pb2.DeleteDestinationRequest(name=name)
        self._call(self.stubs.segments.DeleteDestination, request)

    # -- sync -----------------------------------------------------------------------------------

    def sync_status(self) -> sync_pb2.SyncStatus:
        return self._call(self.stubs.sync.GetSyncStatus, sync_pb2.GetSyncStatusRequest())

    def reconcile(self) -> sync_pb2.TriggerReconcileResponse:
        """Start a reconcile run now."""
        return self._call(self.stubs.sync.TriggerReconcile, sync_pb2.TriggerReconcileRequest())


