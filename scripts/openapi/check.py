"""Validates what the fake Clerk and the client exchanged against Clerk's own OpenAPI specs.

Input: JSON lines, each either
  {"kind": "api", "method", "path", "query", "headers", "request_body", "status",
   "response_headers", "response_body"}   a Backend API request and the answer to it, or
  {"kind": "webhook", "body"}              a webhook payload as delivered.
API exchanges are checked with openapi-core against ../shared/clerk/bapi/2026-05-12.yml (the
request's parameters and body, the answer's status, content type and body). Webhook payloads are
checked against the request body schema of their event type under `x-webhooks` in
../shared/clerk/webhooks/2025-04-15.yml (OpenAPI 3.0 keeps webhooks in an extension, so they are
validated with openapi-schema-validator's OAS 3.0 validator, which reads `nullable` right).
Prints one line per problem and exits 1 if there is any.
"""
import json
import sys
from pathlib import Path
from urllib.parse import parse_qsl

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from werkzeug.datastructures import Headers, ImmutableMultiDict

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "clerk"
BAPI = SPECS / "bapi" / "2026-05-12.yml"
WEBHOOKS = SPECS / "webhooks" / "2025-04-15.yml"


class Request:
    def __init__(self, exchange):
        self.host_url = "https://api.clerk.com"
        self.path = exchange["path"]
        self.method = exchange["method"].lower()
        headers = Headers(list(exchange.get("headers", {}).items()))
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(exchange.get("query", ""), keep_blank_values=True)),
            header=headers,
        )
        body = exchange.get("request_body") or ""
        self.body = body.encode() if body else None
        self.content_type = headers.get("content-type", "application/json" if body else "")


class Response:
    def __init__(self, exchange):
        self.status_code = exchange["status"]
        self.headers = Headers(list(exchange.get("response_headers", {}).items()))
        self.content_type = self.headers.get("content-type", "application/json")
        self.data = exchange.get("response_body", "").encode()


def describe(error):
    """The error and, for schema errors, each failing path and message."""
    lines = [str(error).splitlines()[0][:200]]
    cause = getattr(error, "__cause__", None)
    for inner in getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None) or []:
        path = "/".join(str(p) for p in inner.absolute_path)
        lines.append(f"  at {path or '(root)'}: {inner.message[:300]}")
    return "\n".join(lines)


def check_api(openapi, exchange):
    problems = []
    request, response = Request(exchange), Response(exchange)
    what = f'{exchange["method"]} {exchange["path"]}?{exchange.get("query", "")} -> {exchange["status"]}'
    try:
        openapi.validate_request(request)
    except Exception as error:  # noqa: BLE001 - every validation error is a finding
        # A request the fake refuses on purpose (a bad parameter) is expected to break the spec.
        if exchange["status"] < 400:
            problems.append(f"request {what}: {describe(error)}")
    try:
        openapi.validate_response(request, response)
    except Exception as error:  # noqa: BLE001
        problems.append(f"response {what}: {describe(error)}")
    return problems


def merge_closed_all_of(spec):
    """Clerk's webhook spec composes some payloads as `allOf` of a schema that forbids other
    properties and one that adds a property (`SessionEventPayload` = `Session` + `user`). JSON
    Schema takes that literally and accepts no payload at all, while Clerk's payloads and the
    spec's own examples carry the added property. Such an `allOf` is merged into one object
    schema here; nothing else is loosened."""
    schemas = spec["components"]["schemas"]
    for schema in schemas.values():
        members = schema.get("allOf")
        if not members:
            continue
        resolved = [schemas[m["$ref"].rsplit("/", 1)[1]] if "$ref" in m else m for m in members]
        if not any(m.get("additionalProperties") is False for m in resolved):
            continue
        merged = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
        for member in resolved:
            merged["properties"].update(member.get("properties", {}))
            merged["required"] += member.get("required", [])
        schema.clear()
        schema.update(merged)
    return spec


class Webhooks:
    def __init__(self):
        spec = merge_closed_all_of(yaml.safe_load(WEBHOOKS.read_text()))
        self.spec = spec
        resource = Resource(contents=spec, specification=DRAFT4)
        self.registry = Registry().with_resource("spec", resource)

    def check(self, body):
        event = json.loads(body)
        kind = event.get("type")
        hook = self.spec.get("x-webhooks", {}).get(kind)
        if hook is None:
            return [f"webhook {kind}: no such event type in the spec"]
        schema = {"$ref": "spec#/x-webhooks/" + kind.replace("/", "~1") + "/post/requestBody/content/application~1json/schema"}
        validator = OAS30Validator(schema, registry=self.registry)
        return [
            f"webhook {kind}: at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}"
            for e in validator.iter_errors(event)
        ]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check RECORDED.jsonl")
    openapi = OpenAPI.from_file_path(str(BAPI))
    webhooks = Webhooks()
    problems, counts = [], {"api": 0, "webhook": 0}
    for line in Path(sys.argv[1]).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        counts[record["kind"]] += 1
        if record["kind"] == "api":
            problems += check_api(openapi, record)
        else:
            problems += webhooks.check(record["body"])
    for problem in problems:
        print(problem)
    print(f"checked {counts['api']} API exchanges and {counts['webhook']} webhook payloads: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
