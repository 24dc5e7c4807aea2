"""The tests run against a live clerk-index server that tests/clients.rs starts, with keys
CLERK_INDEX_API_KEY (every scope) and CLERK_INDEX_PUBLIC_KEY (public only). CLERK_INDEX_PROTOCOL
says which API they call: "grpc" (the gRPC port, CLERK_INDEX_SERVER) or "connect" (JSON on the
HTTP port, CLERK_INDEX_HTTP); the same tests run over both."""

import os
import queue
import threading

import pytest

from clerkindex import Client


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo test --test clients`")
    return value


@pytest.fixture(scope="session")
def protocol() -> str:
    return "connect" if os.environ.get("CLERK_INDEX_PROTOCOL") == "connect" else "grpc"


@pytest.fixture(scope="session")
def server(protocol) -> str:
    """The address (host:port) of the API under test."""
    return _env("CLERK_INDEX_HTTP" if protocol == "connect" else "CLERK_INDEX_SERVER")


@pytest.fixture(scope="session")
def api_key() -> str:
    return _env("CLERK_INDEX_API_KEY")


@pytest.fixture(scope="session")
def public_key() -> str:
    return _env("CLERK_INDEX_PUBLIC_KEY")


@pytest.fixture
def client(server, api_key, protocol):
    with Client(server, api_key=api_key, protocol=protocol) as c:
        yield c


def take(iterator, n: int, timeout: float = 20.0) -> list:
    """The next n items of a blocking iterator, failing instead of hanging past the timeout."""
    out: "queue.Queue" = queue.Queue()

    def run():
        try:
            for _ in range(n):
                out.put(("item", next(iterator)))
        except BaseException as e:  # reported to the test thread
            out.put(("error", e))

    threading.Thread(target=run, daemon=True).start()
    items = []
    for _ in range(n):
        try:
            kind, value = out.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"got {len(items)} of {n} items within {timeout} s")
        if kind == "error":
            raise value
        items.append(value)
    return items
