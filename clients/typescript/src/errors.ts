// Typed errors read from the google.rpc details every clerk-index status carries. Branch on the
// class or on `reason` (stable, listed in the server's docs/API.md), never on the message.

import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

export const DOMAIN = "clerk-index";

export interface FieldViolation {
  field: string;
  description: string;
}

export class ClerkIndexError extends Error {
  /** The gRPC status code (Connect's Code enum). */
  readonly code: Code;
  /** The stable ErrorInfo reason; empty when the failure did not come from clerk-index. */
  readonly reason: string;
  readonly metadata: Record<string, string>;
  readonly fieldViolations: FieldViolation[];
  readonly resourceType: string;
  readonly resourceName: string;
  /** Seconds to wait before retrying, when the server said. */
  readonly retryAfter: number | undefined;
  readonly quota: string[];
  readonly preconditions: string[];
  readonly cause: ConnectError;

  constructor(error: ConnectError) {
    super(`${Code[error.code]}: ${error.rawMessage}`);
    this.name = new.target.name;
    this.cause = error;
    this.code = error.code;
    const info = error.findDetails(ErrorInfoSchema).find((i) => i.domain === DOMAIN);
    this.reason = info?.reason ?? "";
    this.metadata = { ...(info?.metadata ?? {}) };
    this.fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
    const resource = error.findDetails(ResourceInfoSchema)[0];
    this.resourceType = resource?.resourceType ?? "";
    this.resourceName = resource?.resourceName ?? "";
    const retry = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryAfter = retry ? Number(retry.seconds) + retry.nanos / 1e9 : undefined;
    this.quota = error.findDetails(QuotaFailureSchema).flatMap((q) => q.violations.map((v) => v.subject));
    this.preconditions = error
      .findDetails(PreconditionFailureSchema)
      .flatMap((p) => p.violations.map((v) => `${v.type}:${v.subject}`));
  }
}

export class InvalidArgument extends ClerkIndexError {}

/** The filter does not parse or fit a field's type; `position` is the 0-based offset. */
export class InvalidFilter extends InvalidArgument {
  get position(): number | undefined {
    const raw = this.metadata["position"];
    return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
  }
}

export class NotFound extends ClerkIndexError {}
export class AlreadyExists extends ClerkIndexError {}

/** UpdateSegment lost to a concurrent edit: read the segment again and retry. */
export class VersionConflict extends ClerkIndexError {
  get actualVersion(): bigint | undefined {
    const raw = this.metadata["actual_version"];
    return raw !== undefined && /^\d+$/.test(raw) ? BigInt(raw) : undefined;
  }
}

/** A watch asked for events the server no longer keeps: list the members again. */
export class EventsExpired extends ClerkIndexError {}
export class Unauthenticated extends ClerkIndexError {}
export class PermissionDenied extends ClerkIndexError {}
export class ResourceExhausted extends ClerkIndexError {}
export class Unavailable extends ClerkIndexError {}
export class DeadlineExceeded extends ClerkIndexError {}
export class FailedPrecondition extends ClerkIndexError {}

type ErrorClass = new (error: ConnectError) => ClerkIndexError;

const byReason: Record<string, ErrorClass> = {
  INVALID_FILTER: InvalidFilter,
  VERSION_MISMATCH: VersionConflict,
  EVENTS_EXPIRED: EventsExpired,
};

const byCode: Partial<Record<Code, ErrorClass>> = {
  [Code.InvalidArgument]: InvalidArgument,
  [Code.NotFound]: NotFound,
  [Code.AlreadyExists]: AlreadyExists,
  [Code.OutOfRange]: EventsExpired,
  [Code.Unauthenticated]: Unauthenticated,
  [Code.PermissionDenied]: PermissionDenied,
  [Code.ResourceExhausted]: ResourceExhausted,
  [Code.Unavailable]: Unavailable,
  [Code.DeadlineExceeded]: DeadlineExceeded,
  [Code.FailedPrecondition]: FailedPrecondition,
};

/**
 * Whether clerk-index itself answered with this error (its statuses carry an ErrorInfo of its
 * domain); a dropped connection, a proxy or the transport did not.
 */
export function fromServer(error: ConnectError): boolean {
  return error.findDetails(ErrorInfoSchema).some((i) => i.domain === DOMAIN);
}

/**
 * The typed error for anything a call threw. ABORTED is a VersionConflict only when the server
 * says so: Node's HTTP/1.1 transport reports a connection cut mid-answer as ABORTED too.
 */
export function toClerkIndexError(error: unknown): ClerkIndexError {
  if (error instanceof ClerkIndexError) return error;
  const connect = ConnectError.from(error);
  const reason = connect.findDetails(ErrorInfoSchema).find((i) => i.domain === DOMAIN)?.reason ?? "";
  const Class = byReason[reason] ?? byCode[connect.code] ?? ClerkIndexError;
  return new Class(connect);
}
