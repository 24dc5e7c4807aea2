"""The JSON API as stubs: every method of a service called in the Connect protocol over HTTP/1.1
(``POST /clerkindex.v1.UserIndex/CountUsers``, proto3 JSON bodies), with the standard library's
``http.client`` and no other dependency.

A stub method takes ``(request, metadata=(), timeout=None)`` like a gRPC stub's and returns the
response message, or an iterator of messages for a server stream. Failures raise
``ConnectRpcError``, a ``grpc.RpcError`` with ``code()``, ``details()`` and the ``google.rpc``
details, so the client's retry and typed-error code serves both protocols.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import struct
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc
from google.protobuf import any_pb2, json_format, message_factory

__all__ = ["ConnectRpcError", "ConnectSession", "ConnectStub"]

# Connect's code names, and the code an HTTP status means when the body is not a Connect error
# (a proxy answered); both from the Connect protocol's specification.
_CODES = {c.name.lower(): c for c in grpc.StatusCode}
_CODES["canceled"] = grpc.StatusCode.CANCELLED
_BY_HTTP_STATUS = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}

_END_STREAM = 0x02
_COMPRESSED = 0x01
# An error body or stream message larger than this is refused rather than read into memory.
_MAX_MESSAGE = 64 * 1024 * 1024
# A watch with no event for this long is taken for a dead connection and resumed (the server
# sends a heartbeat every 15 s by default).
_STREAM_IDLE_TIMEOUT = 120.0

Headers = Sequence[Tuple[str, str]]


class ConnectRpcError(grpc.RpcError):
    """A failed call of the JSON API: ``code()`` and ``details()`` as a gRPC error has them, and
    ``status_details``, the ``google.rpc`` details as ``Any`` messages."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any] = ()):
        super().__init__(f"{code.name}: {message}")
        self._code = code
        self._message = message
        self.status_details: List[any_pb2.Any] = list(details)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message


def _unpadded_b64decode(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _error_from_json(error: Any, fallback: grpc.StatusCode) -> ConnectRpcError:
    if not isinstance(error, dict):
        return ConnectRpcError(fallback, "the server's error is not a Connect error")
    code = _CODES.get(str(error.get("code", "")), grpc.StatusCode.UNKNOWN)
    details = []
    for detail in error.get("details") or []:
        try:
            value = _unpadded_b64decode(detail["value"])
            details.append(any_pb2.Any(type_url=f"type.googleapis.com/{detail['type']}", value=value))
        except (KeyError, TypeError, ValueError):
            continue  # a detail we cannot read is left out, as gRPC clients do
    return ConnectRpcError(code, str(error.get("message", "")), details)


def _error_from_response(status: int, body: bytes) -> ConnectRpcError:
    fallback = _BY_HTTP_STATUS.get(status, grpc.StatusCode.UNKNOWN)
    try:
        return _error_from_json(json.loads(body), fallback)
    except ValueError:
        snippet = body[:200].decode("utf-8", "replace")
        return ConnectRpcError(fallback, f"HTTP {status}: {snippet}")


def _unavailable(error: BaseException) -> ConnectRpcError:
    return ConnectRpcError(grpc.StatusCode.UNAVAILABLE, f"connection failed: {error!r}")


class ConnectSession:
    """Keep-alive HTTP/1.1 connections to one server (``http://`` or ``https://host:port``),
    shared by the stubs; safe to use from several threads."""

    def __init__(self, base_url: str, root_certificates: Optional[bytes] = None, idle_limit: int = 8):
        if base_url.startswith("https://"):
            self._tls: Optional[ssl.SSLContext] = ssl.create_default_context(
                cadata=root_certificates.decode() if root_certificates else None
            )
            address = base_url[len("https://") :]
        else:
            self._tls = None
            address = base_url[len("http://") :] if base_url.startswith("http://") else base_url
        self._address = address.rstrip("/")
        self._idle: List[http.client.HTTPConnection] = []
        self._idle_limit = idle_limit
        self._lock = threading.Lock()

    def _connect(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._address, timeout=timeout, context=self._tls)
        return http.client.HTTPConnection(self._address, timeout=timeout)

    def _take(self) -> Optional[http.client.HTTPConnection]:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._idle_limit:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _send(
        self, path: str, body: bytes, headers: Dict[str, str], timeout: Optional[float], pooled: bool
    ) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The response's status and headers; a kept-alive connection the server closed
        meanwhile is replaced once."""
        reused = self._take() if pooled else None
        for connection in ([reused] if reused is not None else []) + [None]:
            fresh = connection is None
            connection = connection or self._connect(timeout)
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request("POST", path, body=body, headers=headers)
                return connection, connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                connection.close()
                if fresh:
                    raise _unavailable(e) from e
            except socket.timeout as e:
                connection.close()
                raise ConnectRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "the call timed out") from e
            except (OSError, http.client.HTTPException) as e:
                connection.close()
                raise _unavailable(e) from e
        raise AssertionError("unreachable")

    def unary(self, path: str, request: Any, response_class: Any, metadata: Headers, timeout: Optional[float]) -> Any:
        headers = _headers(metadata, "application/json", timeout)
        headers["Connect-Protocol-Version"] = "1"
        body = _to_json(request)
        connection, response = self._send(path, body, headers, timeout, pooled=True)
        try:
            data = _read(response, _MAX_MESSAGE)
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            raise _unavailable(e) from e
        if response.status != 200:
            connection.close()
            raise _error_from_response(response.status, data)
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return _from_json(data, response_class)

    def server_stream(
        self, path: str, request: Any, response_class: Any, metadata: Headers, timeout: Optional[float]
    ) -> Iterator[Any]:
        headers = _headers(metadata, "application/connect+json", timeout)
        envelope = _to_json(request)
        body = struct.pack(">BI", 0, len(envelope)) + envelope
        # Its own connection, read until the end-of-stream message; no deadline unless asked.
        idle = timeout if timeout is not None else _STREAM_IDLE_TIMEOUT
        connection, response = self._send(path, body, headers, idle, pooled=False)
        try:
            if response.status != 200:
                raise _error_from_response(response.status, _read(response, _MAX_MESSAGE))
            yield from _messages(response, response_class)
        finally:
            connection.close()


def _headers(metadata: Headers, content_type: str, timeout: Optional[float]) -> Dict[str, str]:
    headers = {"Content-Type": content_type, "User-Agent": "clerk-index-python"}
    for key, value in metadata:
        headers[key] = value
    if timeout is not None:
        headers["Connect-Timeout-Ms"] = str(max(1, int(timeout * 1000)))
    return headers


def _to_json(message: Any) -> bytes:
    document = json_format.MessageToDict(message, preserving_proto_field_name=False)
    return json.dumps(document, separators=(",", ":")).encode()


def _from_json(data: bytes, response_class: Any) -> Any:
    message = response_class()
    try:
        json_format.Parse(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise ConnectRpcError(grpc.StatusCode.INTERNAL, f"the server's answer does not parse: {e}") from e
    return message


def _read(response: http.client.HTTPResponse, limit: int) -> bytes:
    data = response.read(limit + 1)
    if len(data) > limit:
        raise ConnectRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"an answer passed {limit} bytes")
    return data


def _read_exactly(response: http.client.HTTPResponse, n: int) -> Optional[bytes]:
    data = b""
    while len(data) < n:
        chunk = response.read(n - len(data))
        if not chunk:
            if data:
                raise ConnectRpcError(grpc.StatusCode.UNAVAILABLE, "the stream broke inside a message")
            return None
        data += chunk
    return data


def _messages(response: http.client.HTTPResponse, response_class: Any) -> Iterator[Any]:
    """The stream's messages until its end-of-stream message; an empty message (``{}``) is a
    heartbeat of a quiet stream and is skipped, since no clerk-index stream sends one otherwise."""
    while True:
        try:
            prefix = _read_exactly(response, 5)
            if prefix is None:
                raise ConnectRpcError(grpc.StatusCode.UNAVAILABLE, "the stream ended without its end message")
            flags, length = struct.unpack(">BI", prefix)
            if length > _MAX_MESSAGE:
                raise ConnectRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"a message of {length} bytes")
            payload = _read_exactly(response, length) if length else b""
        except socket.timeout as e:
            raise ConnectRpcError(grpc.StatusCode.UNAVAILABLE, "the stream went quiet past its idle timeout") from e
        except (OSError, http.client.HTTPException) as e:
            raise _unavailable(e) from e
        if payload is None:
            raise ConnectRpcError(grpc.StatusCode.UNAVAILABLE, "the stream broke inside a message")
        if flags & _COMPRESSED:
            raise ConnectRpcError(grpc.StatusCode.INTERNAL, "a compressed message was not asked for")
        if flags & _END_STREAM:
            try:
                end = json.loads(payload or b"{}")
            except ValueError as e:
                raise ConnectRpcError(grpc.StatusCode.INTERNAL, "the stream's end message does not parse") from e
            if isinstance(end, dict) and end.get("error") is not None:
                raise _error_from_json(end["error"], grpc.StatusCode.UNKNOWN)
            return
        if payload.strip() == b"{}":
            continue
        yield _from_json(payload, response_class)


class ConnectStub:
    """Every method of one service (a ``ServiceDescriptor``) as an attribute, named as in the
    proto, called through ``session``."""

    def __init__(self, session: ConnectSession, service: Any):
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            response_class = message_factory.GetMessageClass(method.output_type)
            setattr(self, method.name, _method(session, path, response_class, method.server_streaming))


def _method(session: ConnectSession, path: str, response_class: Any, streaming: bool) -> Callable[..., Any]:
    call = session.server_stream if streaming else session.unary

    def invoke(request: Any, metadata: Headers = (), timeout: Optional[float] = None) -> Any:
        return call(path, request, response_class, metadata, timeout)

    invoke.__name__ = path.rsplit("/", 1)[1]
    return invoke
