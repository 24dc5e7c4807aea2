"""Destinations through the client: a receiver on loopback verifies every delivery with Svix's
own library, through a test message, a segment entry, pause/resume, a rotated secret and delete."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from clerkindex import NotFound, field
from clerkindex.v1 import segments_pb2


class Receiver:
    """An HTTP server that keeps the bodies it could verify with the current secret."""

    def __init__(self):
        self.secret = ""
        self.bodies = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    receiver.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def entered(self) -> list:
        return [
            e["user_id"]
            for b in self.bodies
            if b["type"] == "segment.events"
            for e in b["data"]["events"]
            if e["type"] == "segment.entered"
        ]

    def wait_entered(self, user_id: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while user_id not in self.entered():
            assert time.monotonic() < deadline, f"{user_id} never arrived: {self.bodies}"
            time.sleep(0.05)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_a_destination_delivers_verified_events_until_deleted(client, receiver):
    client.create_segment("py-dest", field("public.py_dest") == True)  # noqa: E712
    destination, secret = client.create_destination("py-crm", receiver.url, ["py-dest"], batch_delay_ms=10)
    assert secret.startswith("whsec_") and destination.name == "py-crm"
    receiver.secret = secret
    tested = client.test_destination("py-crm")
    assert (tested.status_code, tested.error) == (204, "")

    ids = [u["id"] for u in client.search(None, fields=["id"], limit=3)]
    client.update_metadata(ids[0], public={"py_dest": True})
    receiver.wait_entered(ids[0])
    [listed] = [d for d in client.list_destinations() if d.name == "py-crm"]
    assert listed.state == segments_pb2.DESTINATION_STATE_ACTIVE
    assert listed.delivered_events >= 1 and list(listed.segments) == ["py-dest"]

    assert client.pause_destination("py-crm").state == segments_pb2.DESTINATION_STATE_PAUSED
    client.update_metadata(ids[1], public={"py_dest": True})
    time.sleep(0.3)
    assert ids[1] not in receiver.entered()
    assert client.resume_destination("py-crm").state == segments_pb2.DESTINATION_STATE_ACTIVE
    receiver.wait_entered(ids[1])

    updated = client.update_destination("py-crm", url=receiver.url + "?v=2", batch_size=5)
    assert (updated.url, updated.batch_size, list(updated.segments)) == (receiver.url + "?v=2", 5, ["py-dest"])

    receiver.secret = client.rotate_destination_secret("py-crm")
    client.update_metadata(ids[2], public={"py_dest": True})
    receiver.wait_entered(ids[2])
    assert receiver.refused == 0

    client.delete_destination("py-crm")
    assert "py-crm" not in [d.name for d in client.list_destinations()]
    with pytest.raises(NotFound):
        client.delete_destination("py-crm")
    client.delete_segment("py-dest")
