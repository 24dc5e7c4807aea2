// The console's client of the JSON API: Connect unary calls and server streams over fetch, with
// the key in the Authorization header (never in a URL). Errors carry Connect's code, message and
// details, with the filter position when the server reported one.

const PACKAGE = "clerkindex.v1";

export class ApiError extends Error {
  constructor(code, message, details = []) {
    super(message || code);
    this.code = code;
    this.details = details;
  }

  // The character position of a filter error, from the ErrorInfo detail's metadata.
  get position() {
    for (const detail of this.details) {
      const position = detail?.debug?.metadata?.position;
      if (position !== undefined) return Number(position);
    }
    return null;
  }
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(contentType) {
    const headers = { "Content-Type": contentType, "Connect-Protocol-Version": "1" };
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    return headers;
  }

  // One unary call: `service` is UserIndex, Segments or Sync.
  async call(service, method, body = {}, signal) {
    let response;
    try {
      response = await fetch(`/${PACKAGE}.${service}/${method}`, {
        method: "POST",
        headers: this.headers("application/json"),
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("unavailable", `cannot reach the server: ${error.message}`);
    }
    const text = await response.text();
    let json = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ApiError("unknown", `HTTP ${response.status}: ${text.slice(0, 200)}`);
    }
    if (!response.ok) throw new ApiError(json.code || "unknown", json.message, json.details || []);
    return json;
  }

  // A server stream: calls `onMessage` with each message until the stream ends or `signal`
  // aborts. Resolves at the end; rejects with the stream's error. Empty messages are heartbeats.
  async stream(service, method, body, onMessage, signal) {
    const json = new TextEncoder().encode(JSON.stringify(body));
    const envelope = new Uint8Array(5 + json.length);
    new DataView(envelope.buffer).setUint32(1, json.length);
    envelope.set(json, 5);
    const response = await fetch(`/${PACKAGE}.${service}/${method}`, {
      method: "POST",
      headers: this.headers("application/connect+json"),
      body: envelope,
      signal,
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      throw new ApiError(error.code || "unknown", error.message, error.details || []);
    }
    const reader = response.body.getReader();
    let buffer = new Uint8Array(0);
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new ApiError("unavailable", "the stream ended early");
      const joined = new Uint8Array(buffer.length + value.length);
      joined.set(buffer);
      joined.set(value, buffer.length);
      buffer = joined;
      while (buffer.length >= 5) {
        const view = new DataView(buffer.buffer, buffer.byteOffset);
        const flags = view.getUint8(0);
        const length = view.getUint32(1);
        if (buffer.length < 5 + length) break;
        const message = JSON.parse(decoder.decode(buffer.subarray(5, 5 + length)));
        buffer = buffer.slice(5 + length);
        if (flags & 0b10) {
          if (message.error) {
            const { code, message: text, details } = message.error;
            throw new ApiError(code, text, details || []);
          }
          return;
        }
        if (Object.keys(message).length > 0) onMessage(message);
      }
    }
  }
}

// A filter spec from its text; an empty text is every user.
export function filterSpec(text) {
  return text.trim() ? { expression: text } : undefined;
}
