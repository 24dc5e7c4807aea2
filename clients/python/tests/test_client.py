"""The client's layer against a live server: filters in both spellings, pages, exports resumed
after a dropped connection, watches resumed from a checkpoint, and typed errors."""

import datetime
import socket
import threading
import time

import grpc
import pytest

from clerkindex import (
    Client,
    FileCheckpoint,
    InvalidFilter,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    VersionConflict,
    all_of,
    any_of,
    date,
    field,
    not_,
    org,
    in_segment,
    stats,
    terms,
)
from clerkindex.v1 import segments_pb2

from conftest import take

# The same filter built in Python and written as text.
PAIRS = [
    (field("public.plan_type") == "pro", 'public.plan_type = "pro"'),
    (field("public.plan_type") != "pro", 'public.plan_type != "pro"'),
    (field("banned") == True, "banned = true"),  # noqa: E712
    (field("public.membership_tier").is_in(["gold", "platinum"]), 'public.membership_tier IN ["gold", "platinum"]'),
    (field("private.ltv") > 500, "private.ltv > 500"),
    (field("private.ltv").between(100, 200.5), "private.ltv BETWEEN 100 AND 200.5"),
    (field("created_at") >= date("now-365d"), "created_at >= now-365d"),
    (field("created_at") < datetime.date(2030, 1, 1), "created_at < 2030-01-01"),
    (field("public.plan_type").exists(), "public.plan_type EXISTS"),
    (field("email").starts_with("a"), 'email STARTS WITH "a"'),
    (
        (field("public.plan_type") == "pro") & ~(field("banned") == True) | (field("private.ltv") <= 10),  # noqa: E712
        '(public.plan_type = "pro" AND NOT banned = true) OR private.ltv <= 10',
    ),
    (
        all_of(any_of(field("public.plan_type") == "free", field("public.plan_type") == "pro"), not_(field("public.membership_tier") == "gold")),
        '(public.plan_type = "free" OR public.plan_type = "pro") AND NOT public.membership_tier = "gold"',
    ),
]


def test_built_filters_count_like_their_text(client):
    total = client.count()
    assert total > 1000
    nonzero = 0
    for built, text in PAIRS:
        n = client.count(built)
        assert n == client.count(text), text
        assert 0 <= n <= total
        nonzero += n > 0
    assert nonzero >= len(PAIRS) - 2, "most pairs should match someone, or they prove little"


def test_org_brackets_are_built_like_their_text(client):
    built = org((field("role") == "org:admin") & (field("public.plan") == "enterprise"))
    text = 'org[role = "org:admin" AND public.plan = "enterprise"]'
    assert client.count(built) == client.count(text) > 0
    assert client.count(~built) == client.count("NOT " + text) == client.count() - client.count(text)
    # A path of the user, not of a membership, is refused inside the brackets.
    with pytest.raises(InvalidFilter):
        client.count(org(field("banned") == True))  # noqa: E712


def test_organization_metadata_is_read_back_by_every_member(client):
    bucket = client.facet(None, terms("org.id", 1)).facets[0].terms.buckets[0]
    org_id, members = bucket.value.string, bucket.count
    updated = client.update_organization_metadata(org_id, public={"py_plan": "written"})
    assert updated["public_metadata"]["py_plan"] == "written"
    assert client.count(org((field("id") == org_id) & (field("public.py_plan") == "written"))) == members


def test_a_users_segments_are_listed(client):
    user_id = next(client.search('public.plan_type = "pro"', fields=["id"], limit=1))["id"]
    client.create_segment("py-user-pro", 'public.plan_type = "pro"')
    client.create_segment("py-user-none", 'id = "user_nobody"')
    try:
        segments = client.user_segments(user_id)
        assert "py-user-pro" in segments and "py-user-none" not in segments
        assert client.count(in_segment("py-user-pro")) == client.count('IN SEGMENT "py-user-pro"') > 0
        history = client.segment_history("py-user-pro")
        assert history.size == client.count_segment("py-user-pro") > 0
        assert history.periods[-1].size == history.size
        assert client.segment_history("py-user-pro", hourly=True).periods[-1].size == history.size
        with pytest.raises(NotFound):
            client.user_segments("user_unknown")
    finally:
        client.delete_segment("py-user-pro")
        client.delete_segment("py-user-none")


def test_validate_filter_suggests_the_path_meant(client):
    answer = client.validate_filter('public.plan_typ = "pro"')
    assert answer.expression == 'public.plan_typ = "pro"'
    assert [w.suggestions for w in answer.warnings] == [["public.plan_type"]]
    assert client.validate_filter("created_at > now-7d").time_driven
    with pytest.raises(InvalidFilter):
        client.validate_filter("public.plan_type = ")


def test_search_follows_pages_and_agrees_with_export(client):
    text = 'public.plan_type = "pro"'
    paged = [u["id"] for u in client.search(text, fields=["id"], page_size=37)]
    exported = list(client.export(text, ids_only=True, chunk_size=100))
    assert len(paged) == client.count(text) > 37
    assert paged == exported == sorted(exported)
    newest = list(client.search(None, sort="-created_at", fields=["id", "created_at"], limit=5))
    assert len(newest) == 5
    assert [u["created_at"] for u in newest] == sorted((u["created_at"] for u in newest), reverse=True)


def test_facets(client):
    response = client.facet('banned = false', terms("public.plan_type", 3), stats("private.ltv", [50]))
    assert response.matched == client.count("banned = false")
    plans = response.facets[0].terms.buckets
    assert 1 <= len(plans) <= 3
    for bucket in plans:
        assert bucket.count == client.count((field("banned") == False) & (field("public.plan_type") == bucket.value.string))  # noqa: E712
    assert response.facets[1].stats.count > 0


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 that cuts its first connection after `cut` bytes from the server
    (a load balancer restart, a NAT timeout) and passes later ones through."""

    def __init__(self, upstream: str, cut: int):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host.replace("http://", ""), int(port))
        self.cut = cut
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.cut if self.connections == 1 else None
            up = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(down, up, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, limit), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, limit):
        sent = 0
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


def test_export_resumes_after_the_connection_drops(client, server, api_key, protocol):
    fields = ["id", "first_name", "last_name", "public.plan_type", "private.ltv"]
    expected = [u["id"] for u in client.export(None, fields=fields, chunk_size=50)]
    proxy = DroppingProxy(server, cut=64 * 1024)
    try:
        with Client(proxy.address, api_key=api_key, protocol=protocol) as through:
            export = through.export(None, fields=fields, chunk_size=50)
            got = [u["id"] for u in export]
    finally:
        proxy.close()
    assert export.resumes >= 1, "the proxy should have cut the first stream"
    assert proxy.connections >= 2
    assert got == expected
    assert export.total == len(expected)


def test_watch_resumes_from_its_checkpoint(client, tmp_path):
    segment = "py-watch"
    client.create_segment(segment, field("public.py_watch") == True)  # noqa: E712
    ids = [u["id"] for u in client.search(None, fields=["id"], limit=3)]
    for user_id in ids[:2]:
        client.update_metadata(user_id, public={"py_watch": True})
    checkpoint = FileCheckpoint(tmp_path / "watch.seq")
    events = client.watch(segment, checkpoint=checkpoint, after=0)
    # Creating the segment is an event of its own (no user); the users' follow.
    created, first, second = take(events, 3)
    assert (created.kind, created.user_id) == (segments_pb2.SegmentEvent.KIND_SEGMENT_UPDATED, "")
    assert [first.user_id, second.user_id] == ids[:2]
    assert first.kind == second.kind == segments_pb2.SegmentEvent.KIND_ENTERED
    events.close()
    # The first event was handled (we asked for the next), the second was not.
    assert checkpoint.load() == first.sequence
    client.update_metadata(ids[2], public={"py_watch": True})
    resumed = client.watch(segment, checkpoint=checkpoint)
    again, third = take(resumed, 2)
    resumed.close()
    assert (again.user_id, again.sequence) == (second.user_id, second.sequence)
    assert third.user_id == ids[2] and third.sequence > second.sequence
    assert checkpoint.load() == second.sequence
    client.delete_segment(segment)


def test_a_quiet_watch_passes_over_heartbeats_to_the_next_event(client):
    # Over the JSON API a quiet stream carries heartbeats (empty messages, every 200 ms in these
    # tests); over gRPC it carries none. Either way the next thing the watch yields is the event.
    client.create_segment("py-quiet", field("public.py_quiet") == True)  # noqa: E712
    user_id = next(iter(client.search(None, fields=["id"], limit=1)))["id"]
    events = client.watch("py-quiet", after=0)
    [created] = take(events, 1)
    assert created.kind == segments_pb2.SegmentEvent.KIND_SEGMENT_UPDATED
    time.sleep(1.0)
    client.update_metadata(user_id, public={"py_quiet": True})
    [entered] = take(events, 1)
    events.close()
    assert (entered.kind, entered.user_id) == (segments_pb2.SegmentEvent.KIND_ENTERED, user_id)
    client.delete_segment("py-quiet")


def test_watch_many_follows_two_segments_on_one_stream_until_both_are_deleted(client):
    names = ["py-many-a", "py-many-b"]
    for name in names:
        client.create_segment(name, field(f"public.{name.replace('-', '_')}") == True)  # noqa: E712
    user_id = next(iter(client.search(None, fields=["id"], limit=1)))["id"]
    events = client.watch_many(names, after=0)
    client.update_metadata(user_id, public={"py_many_a": True, "py_many_b": True})
    seen = []
    for event in events:
        seen.append((event.segment, event.kind, event.user_id))
        if sum(1 for s in seen if s[1] == segments_pb2.SegmentEvent.KIND_ENTERED) == 2:
            break
    entered = [(s, u) for s, k, u in seen if k == segments_pb2.SegmentEvent.KIND_ENTERED]
    assert sorted(entered) == [(names[0], user_id), (names[1], user_id)]
    for name in names:
        client.delete_segment(name)
    # The stream ends by itself after the second deletion.
    ending = list(events)
    assert [e.segment for e in ending if e.kind == segments_pb2.SegmentEvent.KIND_SEGMENT_DELETED] == names


def test_errors_are_typed_from_their_details(client, server, public_key, protocol):
    text = 'public.plan_type = "pro" AND AND banned = true'
    with pytest.raises(InvalidFilter) as e:
        client.count(text)
    assert e.value.reason == "INVALID_FILTER"
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.position == text.index("AND AND") + 4
    assert e.value.field_violations[0].field == "filter.expression"

    with pytest.raises(NotFound) as e:
        client.get_user("user_does_not_exist")
    assert (e.value.reason, e.value.resource_name) == ("USER_NOT_FOUND", "user_does_not_exist")

    segment = client.create_segment("py-errors", 'public.plan_type = "pro"')
    client.update_segment("py-errors", description="first", expected_version=segment.version)
    with pytest.raises(VersionConflict) as e:
        client.update_segment("py-errors", description="second", expected_version=segment.version)
    assert e.value.actual_version == segment.version + 1
    client.delete_segment("py-errors")

    with Client(server, protocol=protocol) as anonymous, pytest.raises(Unauthenticated) as e:
        anonymous.count()
    assert e.value.reason == "API_KEY_MISSING"
    with Client(server, api_key=public_key, protocol=protocol) as public:
        assert list(public.describe_caller().scopes) == ["public"]
        with pytest.raises(PermissionDenied) as e:
            public.count("private.ltv > 1")
    assert e.value.reason == "SCOPE_MISSING"
