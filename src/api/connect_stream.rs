//! The bridge's view of a gRPC response: its messages out of the gRPC framing, its status from
//! the trailers (or the headers, for an immediate error), and, for a server stream, the relay
//! that re-frames each message as a Connect envelope while the call runs, with a heartbeat
//! after a quiet spell and the end-of-stream message last.

use std::convert::Infallible;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::connect_error::error_json;
use super::connect_methods::ConvertError;

/// A Connect envelope's flag: this is the end-of-stream message.
const END_STREAM: u8 = 0b10;
/// A Connect (or gRPC) envelope's flag: the message is compressed.
pub(super) const COMPRESSED: u8 = 0b01;

/// Converts one message's protobuf encoding for the caller (to JSON), or not at all (proto).
pub(super) type Convert = Option<fn(&[u8]) -> Result<Vec<u8>, ConvertError>>;

/// `message` in a 5-byte-prefixed envelope (gRPC's framing and Connect's are the same shape).
pub(super) fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(flags);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// The next whole envelope in `buffer` (its flags and message), taken out of it.
pub(super) fn take_envelope(buffer: &mut BytesMut) -> Option<(u8, Bytes)> {
    if buffer.len() < 5 {
        return None;
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + length {
        return None;
    }
    let flags = buffer.get_u8();
    buffer.advance(4);
    Some((flags, buffer.split_to(length).freeze()))
}

/// The status a gRPC response carries in `headers` (trailers, or the headers of an immediate
/// error).
pub(super) fn status_of(headers: &HeaderMap) -> Option<tonic::Status> {
    tonic::Status::from_header_map(headers)
}

/// The caller-visible metadata among `headers`: everything but the gRPC protocol's own.
pub(super) fn metadata(
    headers: &HeaderMap,
) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
    headers.iter().filter(|(name, _)| {
        let name = name.as_str();
        !name.starts_with("grpc-") && name != "content-type" && name != "te"
    })
}

/// The messages of a gRPC response body, one at a time, and how the call ended.
pub(super) struct Messages {
    body: tonic::body::Body,
    buffer: BytesMut,
}

/// What a gRPC response body holds next.
pub(super) enum Next {
    Message(Bytes),
    /// The call ended with this status and these trailers.
    End(tonic::Status, HeaderMap),
}

impl Messages {
    pub fn new(body: tonic::body::Body) -> Messages {
        Messages {
            body,
            buffer: BytesMut::new(),
        }
    }

    /// The next message or the end. Cancel-safe: a frame is taken into the buffer only once it
    /// has arrived whole, so a timeout around this loses nothing.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some((_, message)) = take_envelope(&mut self.buffer) {
                return Next::Message(message);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let status = status_of(&trailers).unwrap_or_else(no_status);
                        return Next::End(status, trailers);
                    }
                },
                Some(Err(status)) => return Next::End(status, HeaderMap::new()),
                None => return Next::End(no_status(), HeaderMap::new()),
            }
        }
    }
}

fn no_status() -> tonic::Status {
    tonic::Status::internal("the call ended without a status")
}

/// A whole unary (or drained) gRPC response: its messages, its status and its trailers.
pub(super) async fn collect(
    headers: &HeaderMap,
    body: tonic::body::Body,
) -> (Vec<Bytes>, tonic::Status, HeaderMap) {
    if let Some(status) = status_of(headers) {
        return (Vec::new(), status, HeaderMap::new());
    }
    let mut body = Messages::new(body);
    let mut messages = Vec::new();
    loop {
        match body.next().await {
            Next::Message(message) => messages.push(message),
            Next::End(status, trailers) => return (messages, status, trailers),
        }
    }
}

/// Relays a server stream from the gRPC side to a Connect caller.
pub(super) struct Relay {
    messages: Messages,
    convert: Convert,
    heartbeat: Duration,
    deadline: Option<Instant>,
    ended: bool,
}

impl Relay {
    pub fn new(
        body: tonic::body::Body,
        convert: Convert,
        heartbeat: Duration,
        deadline: Option<Instant>,
    ) -> Relay {
        Relay {
            messages: Messages::new(body),
            convert,
            heartbeat,
            deadline,
            ended: false,
        }
    }

    /// The Connect stream's body: envelopes as the messages come, the end-of-stream last.
    pub fn into_body(self) -> axum::body::Body {
        let chunks = futures_util::stream::unfold(self, |mut relay| async move {
            let chunk = relay.next().await?;
            Some((Ok::<_, Infallible>(chunk), relay))
        });
        axum::body::Body::from_stream(chunks)
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let wait = match self.deadline {
            Some(deadline) => self
                .heartbeat
                .min(deadline.saturating_duration_since(Instant::now())),
            None => self.heartbeat,
        };
        Some(
            match tokio::time::timeout(wait, self.messages.next()).await {
                Ok(Next::Message(message)) => self.message(&message),
                Ok(Next::End(status, trailers)) => self.end(&status, &trailers),
                Err(_) if self.deadline.is_some_and(|d| d <= Instant::now()) => {
                    let status = tonic::Status::deadline_exceeded("the call's deadline passed");
                    self.end(&status, &HeaderMap::new())
                }
                // Quiet for a while: an empty message keeps proxies and clients from timing out.
                Err(_) => envelope(0, self.empty_message()),
            },
        )
    }

    fn empty_message(&self) -> &'static [u8] {
        match self.convert {
            Some(_) => b"{}",
            None => b"",
        }
    }

    fn message(&mut self, message: &[u8]) -> Bytes {
        match self.convert {
            None => envelope(0, message),
            Some(convert) => match convert(message) {
                Ok(json) => envelope(0, &json),
                Err(e) => {
                    let status =
                        tonic::Status::internal(format!("a response did not convert: {e}"));
                    self.end(&status, &HeaderMap::new())
                }
            },
        }
    }

    /// The end-of-stream message: the error, if the call failed, and the trailing metadata.
    fn end(&mut self, status: &tonic::Status, trailers: &HeaderMap) -> Bytes {
        self.ended = true;
        end_of_stream(status, trailers)
    }
}

/// Connect's end-of-stream envelope for a call that ended with `status` and `trailers`.
pub(super) fn end_of_stream(status: &tonic::Status, trailers: &HeaderMap) -> Bytes {
    let mut end = Map::new();
    if status.code() != tonic::Code::Ok {
        end.insert("error".into(), error_json(status));
    }
    let mut fields: Map<String, Value> = Map::new();
    for (name, value) in metadata(trailers) {
        let Ok(value) = value.to_str() else { continue };
        let values = fields
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(value.into());
        }
    }
    if !fields.is_empty() {
        end.insert("metadata".into(), Value::Object(fields));
    }
    let json = serde_json::to_vec(&Value::Object(end)).expect("JSON values serialize");
    envelope(END_STREAM, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_come_out_whole_and_only_whole() {
        let mut buffer = BytesMut::new();
        let first = envelope(0, b"hello");
        buffer.extend_from_slice(&first[..3]);
        assert!(take_envelope(&mut buffer).is_none());
        buffer.extend_from_slice(&first[3..]);
        buffer.extend_from_slice(&envelope(COMPRESSED, b"")[..]);
        assert_eq!(
            take_envelope(&mut buffer),
            Some((0, Bytes::from_static(b"hello")))
        );
        assert_eq!(take_envelope(&mut buffer), Some((COMPRESSED, Bytes::new())));
        assert!(buffer.is_empty());
    }

    #[test]
    fn the_end_of_stream_carries_the_error_and_the_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        trailers.insert("x-extra", "one".parse().unwrap());
        let status = tonic::Status::not_found("no such segment");
        let mut framed = BytesMut::from(&end_of_stream(&status, &trailers)[..]);
        let (flags, message) = take_envelope(&mut framed).unwrap();
        assert_eq!(flags, END_STREAM);
        let end: Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(end["error"]["code"], "not_found");
        assert_eq!(end["metadata"], serde_json::json!({ "x-extra": ["one"] }));
        let ok = end_of_stream(&tonic::Status::ok(""), &HeaderMap::new());
        assert_eq!(&ok[5..], b"{}");
    }
}
