// The clerk-index client for Node: one object per server, methods for every call, with paging,
// export resume, watch checkpoints, read-your-writes and typed errors built in. It speaks gRPC
// over HTTP/2 to the gRPC port (gzip both ways), or JSON in the Connect protocol over HTTP/1.1 to
// the HTTP port, through Connect's Node transports; every method works the same over either.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client as RpcClient, createClient, type Interceptor } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";

import type { Checkpoint } from "./checkpoint.js";
import { fromServer, toClerkIndexError } from "./errors.js";
import { type FilterLike, toSpec } from "./filters.js";
import {
  type ExportUsersResponse,
  type FacetRequest,
  FacetRequestSchema,
  type FacetUsersResponse,
  type Freshness,
  type DescribeCallerResponse,
  type DescribeFieldsResponse,
  type ValidateFilterResponse,
  CalendarInterval,
  UserIndex,
} from "./gen/clerkindex/v1/user_index_pb.js";
import {
  type Destination,
  type GetSegmentHistoryResponse,
  type TestDestinationResponse,
  GetSegmentHistoryRequest_Granularity,
  type Segment,
  type SegmentEvent,
  SegmentEvent_Kind,
  Segments,
} from "./gen/clerkindex/v1/segments_pb.js";
import { Sync, type SyncStatus, type TriggerReconcileResponse } from "./gen/clerkindex/v1/sync_pb.js";

export type User = Record<string, unknown> & { id: string };

export interface ClientOptions {
  /** An API key; sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** PEM root certificates for a private CA (https:// servers). */
  ca?: string | Buffer;
  /** Unary calls time out after this many milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Reads after a write through this client wait for a snapshot holding it (default true). */
  readYourWrites?: boolean;
  /** Largest message accepted from the server (default 64 MiB). */
  readMaxBytes?: number;
  /**
   * `"grpc"` (the default) calls the gRPC port over HTTP/2. `"connect"` calls the HTTP port
   * (`--http-addr`) with JSON bodies in the Connect protocol over HTTP/1.1, for networks whose
   * proxies do not pass HTTP/2 or gRPC trailers.
   */
  protocol?: "grpc" | "connect";
}

export interface Page {
  users: User[];
  nextPageToken: string;
  freshness: Freshness | undefined;
}

export interface SearchOptions {
  /** A path, `-path` for descending. */
  sort?: string;
  fields?: string[];
  pageSize?: number;
  pageToken?: string;
  /** search(): stop after this many users. */
  limit?: number;
}

export interface ExportOptions {
  fields?: string[];
  idsOnly?: boolean;
  chunkSize?: number;
  resumeCursor?: string;
  /** Resumes in a row without progress before giving up (default 5). */
  retries?: number;
}

export interface WatchOptions {
  checkpoint?: Checkpoint;
  /** Replay after this sequence when the checkpoint holds none (0 = every retained event). */
  after?: bigint;
  /** Reconnects in a row without an event before giving up (default 10). */
  retries?: number;
  signal?: AbortSignal;
}

// Stream failures worth resuming: the connection or the server went away, or a budget was full.
const RESUMABLE = new Set([Code.Unavailable, Code.Internal, Code.Unknown, Code.Canceled, Code.ResourceExhausted]);

function resumable(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return false;
  const connect = ConnectError.from(error);
  // Over HTTP/1.1 a connection cut mid-stream surfaces as ABORTED, which the server itself
  // only answers for a lost version check.
  return RESUMABLE.has(connect.code) || (connect.code === Code.Aborted && !fromServer(connect));
}

async function backoff(failures: number): Promise<void> {
  const delay = Math.min(5000, 100 * 2 ** (failures - 1)) * (0.5 + Math.random() / 2);
  await new Promise((resolve) => setTimeout(resolve, delay));
}

function sortSpec(sort: string | undefined) {
  if (!sort) return undefined;
  return sort.startsWith("-") ? { path: sort.slice(1), descending: true } : { path: sort, descending: false };
}

export function terms(path: string, size = 10, opts: { includeMissing?: boolean; name?: string } = {}): FacetRequest {
  return create(FacetRequestSchema, {
    name: opts.name ?? "",
    path,
    kind: { case: "terms", value: { size, includeMissing: opts.includeMissing ?? false } },
  });
}

export function stats(path: string, percentiles: number[] = [], name = ""): FacetRequest {
  return create(FacetRequestSchema, { name, path, kind: { case: "stats", value: { percentiles } } });
}

export function histogram(path: string, interval: number, offset = 0, name = ""): FacetRequest {
  return create(FacetRequestSchema, { name, path, kind: { case: "histogram", value: { interval, offset } } });
}

const calendar = { day: CalendarInterval.DAY, week: CalendarInterval.WEEK, month: CalendarInterval.MONTH };

export function dateHistogram(path: string, interval: keyof typeof calendar = "month", name = ""): FacetRequest {
  return create(FacetRequestSchema, {
    name,
    path,
    kind: { case: "dateHistogram", value: { interval: calendar[interval] } },
  });
}

/** The users (or ids) of an export, resumed from the last chunk's cursor when the stream breaks. */
export class Export<T> implements AsyncIterable<T> {
  total: bigint | undefined;
  freshness: Freshness | undefined;
  eventSequence: bigint | undefined;
  cursor: string;
  resumes = 0;

  constructor(
    private readonly open: (cursor: string, signal: AbortSignal) => AsyncIterable<ExportUsersResponse>,
    private readonly decode: (chunk: ExportUsersResponse) => T[],
    resumeCursor: string,
    private readonly retries: number,
  ) {
    this.cursor = resumeCursor;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    const abort = new AbortController();
    let failures = 0;
    try {
      for (;;) {
        try {
          for await (const chunk of this.open(this.cursor, abort.signal)) {
            if (isHeartbeat(chunk)) continue;
            if (this.total === undefined) {
              this.total = chunk.total;
              this.freshness = chunk.freshness;
              this.eventSequence = chunk.eventSequence;
            }
            yield* this.decode(chunk);
            if (chunk.cursor) this.cursor = chunk.cursor;
            failures = 0;
          }
          return;
        } catch (error) {
          failures += 1;
          if (!resumable(error) || failures > this.retries) throw toClerkIndexError(error);
          this.resumes += 1;
          await backoff(failures);
        }
      }
    } finally {
      abort.abort();
    }
  }

  /** Every item, in order. */
  async toArray(): Promise<T[]> {
    const out: T[] = [];
    for await (const item of this) out.push(item);
    return out;
  }
}

/**
 * A connection to one clerk-index server: `http://host:port`, or `https://host:port` for TLS.
 */
export class Client {
  readonly userIndex: RpcClient<typeof UserIndex>;
  readonly segments: RpcClient<typeof Segments>;
  readonly sync: RpcClient<typeof Sync>;
  minGeneration = 0n;
  minLogSequence = 0n;
  private readonly timeoutMs: number;
  private readonly readYourWrites: boolean;
  private readonly close_: () => void;

  constructor(server: string, options: ClientOptions = {}) {
    const baseUrl = /^https?:\/\//.test(server) ? server : `http://${server}`;
    const auth: Interceptor = (next) => (request) => {
      if (options.apiKey) request.header.set("authorization", `Bearer ${options.apiKey.trim()}`);
      return next(request);
    };
    const readMaxBytes = options.readMaxBytes ?? 64 * 1024 * 1024;
    let transport;
    if (options.protocol === "connect") {
      // Keep-alive HTTP/1.1 connections of our own, so close() can end them. The server takes
      // uncompressed requests; its answers are not compressed either.
      const tls = baseUrl.startsWith("https:");
      const agent = tls
        ? new HttpsAgent({ keepAlive: true, ca: options.ca })
        : new HttpAgent({ keepAlive: true });
      transport = createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        nodeOptions: { agent },
        interceptors: [auth],
        acceptCompression: [],
        readMaxBytes,
      });
      this.close_ = () => agent.destroy();
    } else {
      // One HTTP/2 connection, closed after 60 s idle (or by close()), pinged while streams run.
      const session = new Http2SessionManager(
        baseUrl,
        { idleConnectionTimeoutMs: 60_000, pingIntervalMs: 30_000 },
        options.ca ? { ca: options.ca } : undefined,
      );
      transport = createGrpcTransport({
        baseUrl,
        sessionManager: session,
        interceptors: [auth],
        acceptCompression: [compressionGzip],
        sendCompression: compressionGzip,
        readMaxBytes,
      });
      this.close_ = () => session.abort();
    }
    this.userIndex = createClient(UserIndex, transport);
    this.segments = createClient(Segments, transport);
    this.sync = createClient(Sync, transport);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.readYourWrites = options.readYourWrites ?? true;
  }

  /** Closes the connection; calls in flight fail. A process may exit without it after 60 s idle. */
  close(): void {
    this.close_();
  }

  private async call<T>(run: (opts: { timeoutMs: number }) => Promise<T>): Promise<T> {
    try {
      return await run({ timeoutMs: this.timeoutMs });
    } catch (error) {
      throw toClerkIndexError(error);
    }
  }

  private fresh() {
    return this.readYourWrites ? { minGeneration: this.minGeneration, minLogSequence: this.minLogSequence } : {};
  }

  private wrote(freshness: Freshness | undefined): void {
    if (!freshness) return;
    if (freshness.generation > this.minGeneration) this.minGeneration = freshness.generation;
    if (freshness.logSequence > this.minLogSequence) this.minLogSequence = freshness.logSequence;
  }

  // -- users -----------------------------------------------------------------------------------

  /** How many users match (every user without a filter). Counts are bigints, as uint64 is. */
  async count(filter?: FilterLike): Promise<bigint> {
    const r = await this.call((o) => this.userIndex.countUsers({ filter: toSpec(filter), ...this.fresh() }, o));
    return r.count;
  }

  /** The Clerk user as JSON, reduced to `fields` when given. Throws NotFound. */
  async getUser(userId: string, fields: string[] = []): Promise<User> {
    const r = await this.call((o) => this.userIndex.getUser({ userId, fields, ...this.fresh() }, o));
    return JSON.parse(r.user?.json ?? "{}") as User;
  }

  /** One page. */
  async searchPage(filter?: FilterLike, options: SearchOptions = {}): Promise<Page> {
    const r = await this.call((o) =>
      this.userIndex.searchUsers(
        {
          filter: toSpec(filter),
          sort: sortSpec(options.sort),
          fields: options.fields ?? [],
          pageSize: options.pageSize ?? 100,
          pageToken: options.pageToken ?? "",
          ...this.fresh(),
        },
        o,
      ),
    );
    return {
      users: r.users.map((u) => JSON.parse(u.json) as User),
      nextPageToken: r.nextPageToken,
      freshness: r.freshness,
    };
  }

  /** Every matching user (or the first `limit`), following pages as you iterate. */
  async *search(filter?: FilterLike, options: SearchOptions = {}): AsyncGenerator<User> {
    let token = options.pageToken ?? "";
    let seen = 0;
    for (;;) {
      const page = await this.searchPage(filter, { ...options, pageToken: token });
      for (const user of page.users) {
        if (options.limit !== undefined && seen >= options.limit) return;
        seen += 1;
        yield user;
      }
      token = page.nextPageToken;
      if (!token) return;
    }
  }

  /** Facets (terms, stats, histogram, dateHistogram) of the matching users. */
  async facet(filter: FilterLike, ...facets: FacetRequest[]): Promise<FacetUsersResponse> {
    return this.call((o) => this.userIndex.facetUsers({ filter: toSpec(filter), facets, ...this.fresh() }, o));
  }

  async describeFields(pathPrefix = ""): Promise<DescribeFieldsResponse> {
    return this.call((o) => this.userIndex.describeFields({ pathPrefix, ...this.fresh() }, o));
  }

  /** The key this client uses: its `keyName` and `scopes` (what it may do). */
  async describeCaller(): Promise<DescribeCallerResponse> {
    return this.call((o) => this.userIndex.describeCaller({}, o));
  }

  /**
   * The filter checked without running it: its normalized `expression` and `tree`, the
   * `requiredScopes`, `timeDriven`, and `warnings` (paths no user holds, with `suggestions`;
   * values of a type the path never holds; relative times). Throws InvalidFilter for a filter
   * that does not parse.
   */
  async validateFilter(filter: FilterLike): Promise<ValidateFilterResponse> {
    return this.call((o) => this.userIndex.validateFilter({ filter: toSpec(filter) }, o));
  }

  /** Every matching user in id order from one snapshot, resumed after a broken stream. */
  export(filter: FilterLike, options: ExportOptions & { idsOnly: true }): Export<string>;
  export(filter?: FilterLike, options?: ExportOptions): Export<User>;
  export(filter?: FilterLike, options: ExportOptions = {}): Export<User | string> {
    const fresh = this.fresh();
    return new Export<User | string>(
      (cursor, signal) =>
        this.userIndex.exportUsers(
          {
            filter: toSpec(filter),
            fields: options.fields ?? [],
            idsOnly: options.idsOnly ?? false,
            chunkSize: options.chunkSize ?? 1000,
            resumeCursor: cursor,
            ...fresh,
          },
          { signal },
        ),
      decodeChunk,
      options.resumeCursor ?? "",
      options.retries ?? 5,
    );
  }

  /** Deep-merge metadata into the user in Clerk; the index holds the change on return. */
  async updateMetadata(
    userId: string,
    metadata: { public?: object; private?: object; unsafe?: object },
    fields: string[] = [],
  ): Promise<User> {
    const r = await this.call((o) =>
      this.userIndex.updateUserMetadata(
        {
          userId,
          fields,
          publicMetadata: metadata.public && JSON.stringify(metadata.public),
          privateMetadata: metadata.private && JSON.stringify(metadata.private),
          unsafeMetadata: metadata.unsafe && JSON.stringify(metadata.unsafe),
        },
        o,
      ),
    );
    this.wrote(r.freshness);
    return JSON.parse(r.user?.json ?? "{}") as User;
  }

  /**
   * Deep-merge metadata into the organization in Clerk; every member's `org.public.*` and
   * `org.private.*` read the change on return.
   */
  async updateOrganizationMetadata(
    organizationId: string,
    metadata: { public?: object; private?: object },
  ): Promise<Record<string, unknown>> {
    const r = await this.call((o) =>
      this.userIndex.updateOrganizationMetadata(
        {
          organizationId,
          publicMetadata: metadata.public && JSON.stringify(metadata.public),
          privateMetadata: metadata.private && JSON.stringify(metadata.private),
        },
        o,
      ),
    );
    this.wrote(r.freshness);
    return JSON.parse(r.organizationJson) as Record<string, unknown>;
  }

  // -- segments --------------------------------------------------------------------------------

  async createSegment(name: string, filter: FilterLike, description = ""): Promise<Segment> {
    return this.call((o) => this.segments.createSegment({ name, description, filter: toSpec(filter) }, o));
  }

  async getSegment(name: string): Promise<Segment> {
    return this.call((o) => this.segments.getSegment({ name }, o));
  }

  async listSegments(): Promise<Segment[]> {
    return (await this.call((o) => this.segments.listSegments({}, o))).segments;
  }

  /** Change a segment; with `expectedVersion` a concurrent edit throws VersionConflict. */
  async updateSegment(
    name: string,
    change: { filter?: FilterLike; description?: string; expectedVersion?: bigint },
  ): Promise<Segment> {
    return this.call((o) =>
      this.segments.updateSegment(
        {
          name,
          filter: toSpec(change.filter),
          description: change.description,
          expectedVersion: change.expectedVersion ?? 0n,
        },
        o,
      ),
    );
  }

  async deleteSegment(name: string): Promise<void> {
    await this.call((o) => this.segments.deleteSegment({ name }, o));
  }

  async countSegment(name: string): Promise<bigint> {
    return (await this.call((o) => this.segments.countSegment({ name, ...this.fresh() }, o))).count;
  }

  /**
   * The segment's `size` now and its `periods` (UTC days, or hours for the last week):
   * `startTimeMs`, `entered`, `exited` and `size` at the end of each.
   */
  async segmentHistory(name: string, options: { hourly?: boolean } = {}): Promise<GetSegmentHistoryResponse> {
    const granularity = options.hourly
      ? GetSegmentHistoryRequest_Granularity.HOUR
      : GetSegmentHistoryRequest_Granularity.DAY;
    return this.call((o) => this.segments.getSegmentHistory({ name, granularity }, o));
  }

  /** The names of the saved segments the user is in now (of those this key may read). */
  async userSegments(userId: string): Promise<string[]> {
    return (await this.call((o) => this.segments.getUserSegments({ userId, ...this.fresh() }, o))).segments;
  }

  // -- destinations ----------------------------------------------------------------------------

  /**
   * A webhook receiver for the segments' events; returns it and its signing secret (`whsec_...`),
   * shown only now: verify deliveries with Svix's or Standard Webhooks' libraries. Batch values
   * left out take the server's defaults.
   */
  async createDestination(
    name: string,
    url: string,
    segments: string[],
    options: { batchSize?: number; batchDelayMs?: number } = {},
  ): Promise<{ destination: Destination; signingSecret: string }> {
    const r = await this.call((o) =>
      this.segments.createDestination(
        { name, url, segments, batchSize: options.batchSize ?? 0, batchDelayMs: BigInt(options.batchDelayMs ?? 0) },
        o,
      ),
    );
    return { destination: r.destination!, signingSecret: r.signingSecret };
  }

  /** Every destination with its state, position, counts, last error and lag. */
  async listDestinations(): Promise<Destination[]> {
    return (await this.call((o) => this.segments.listDestinations({}, o))).destinations;
  }

  /**
   * Change what is given (the URL, the segments followed, the batching); the position and the
   * secret are kept, and a new URL starts its retries over.
   */
  async updateDestination(
    name: string,
    change: { url?: string; segments?: string[]; batchSize?: number; batchDelayMs?: number },
  ): Promise<Destination> {
    const request = {
      name,
      url: change.url,
      segments: change.segments && { names: change.segments },
      batchSize: change.batchSize,
      batchDelayMs: change.batchDelayMs === undefined ? undefined : BigInt(change.batchDelayMs),
    };
    return (await this.call((o) => this.segments.updateDestination(request, o))).destination!;
  }

  async pauseDestination(name: string): Promise<Destination> {
    return (await this.call((o) => this.segments.pauseDestination({ name }, o))).destination!;
  }

  /** Deliver again from where it stopped (paused or failing; a gap needs a resync). */
  async resumeDestination(name: string): Promise<Destination> {
    return (await this.call((o) => this.segments.resumeDestination({ name }, o))).destination!;
  }

  /** Send the segments' current members as a snapshot, then the events after it. */
  async resyncDestination(name: string): Promise<Destination> {
    return (await this.call((o) => this.segments.resyncDestination({ name }, o))).destination!;
  }

  /** A new signing secret (returned, shown only now); the old one signs too for a day. */
  async rotateDestinationSecret(name: string): Promise<string> {
    return (await this.call((o) => this.segments.rotateDestinationSecret({ name }, o))).signingSecret;
  }

  /** POSTs a signed `destination.test` message once: `statusCode`, `latencyMs`, `error`. */
  async testDestination(name: string): Promise<TestDestinationResponse> {
    return this.call((o) => this.segments.testDestination({ name }, o));
  }

  async deleteDestination(name: string): Promise<void> {
    await this.call((o) => this.segments.deleteDestination({ name }, o));
  }

  /** The segment's members, as export() streams them. */
  segmentMembers(name: string, options: Omit<ExportOptions, "idsOnly"> = {}): Export<User> {
    const fresh = this.fresh();
    return new Export<User>(
      (cursor, signal) =>
        this.segments.listSegmentMembers(
          { name, fields: options.fields ?? [], chunkSize: options.chunkSize ?? 1000, resumeCursor: cursor, ...fresh },
          { signal },
        ),
      (chunk) => chunk.users.map((u) => JSON.parse(u.json) as User),
      options.resumeCursor ?? "",
      options.retries ?? 5,
    );
  }

  /**
   * The segment's events, reconnecting after a broken stream. Resumes after the checkpoint's
   * sequence, else after `after`, else from now on. An event is saved to the checkpoint when the
   * next one is asked for, so one being handled when the program dies is seen again (at least
   * once). Ends after the segment is deleted; throws EventsExpired when the server no longer
   * holds the events after the checkpoint.
   */
  async *watch(segment: string, options: WatchOptions = {}): AsyncGenerator<SegmentEvent> {
    yield* this.follow([segment], false, options);
  }

  /**
   * watch() over several segments on one stream, in sequence order; with no names, every
   * segment this key may read (ones created later included). Ends after the last named segment
   * is deleted (never, for every readable segment).
   */
  async *watchMany(segments: string[] = [], options: WatchOptions = {}): AsyncGenerator<SegmentEvent> {
    yield* this.follow(segments, true, options);
  }

  private async *follow(names: string[], many: boolean, options: WatchOptions): AsyncGenerator<SegmentEvent> {
    let last = (await options.checkpoint?.load()) ?? options.after;
    const retries = options.retries ?? 10;
    const deleted = new Set<string>();
    let failures = 0;
    for (;;) {
      const abort = new AbortController();
      const stop = () => abort.abort();
      options.signal?.addEventListener("abort", stop);
      try {
        // Resuming: the segments deleted meanwhile are gone from the server.
        const remaining = names.filter((n) => !deleted.has(n));
        const stream = many
          ? this.segments.watchSegments({ names: remaining, afterSequence: last }, { signal: abort.signal })
          : this.segments.watchSegment({ name: names[0], afterSequence: last }, { signal: abort.signal });
        for await (const event of stream) {
          // A heartbeat of a quiet Connect stream is an empty message; every event has a sequence.
          if (event.sequence === 0n) continue;
          failures = 0;
          yield event;
          last = event.sequence;
          await options.checkpoint?.save(event.sequence);
          if (event.kind === SegmentEvent_Kind.SEGMENT_DELETED) {
            deleted.add(event.segment);
            if (names.length > 0 && deleted.size >= names.length) return;
          }
        }
        // The server ended the stream without a deletion (it is shutting down): resume.
        failures += 1;
        if (failures > retries) return;
      } catch (error) {
        failures += 1;
        if (!resumable(error, options.signal) || failures > retries) throw toClerkIndexError(error);
      } finally {
        options.signal?.removeEventListener("abort", stop);
        abort.abort();
      }
      await backoff(failures);
    }
  }

  // -- sync ------------------------------------------------------------------------------------

  async syncStatus(): Promise<SyncStatus> {
    return this.call((o) => this.sync.getSyncStatus({}, o));
  }

  /** Start a reconcile run now. */
  async reconcile(): Promise<TriggerReconcileResponse> {
    return this.call((o) => this.sync.triggerReconcile({}, o));
  }
}

// A Connect stream quiet for a while carries an empty message (`{}`) to keep proxies from closing
// it. The first chunk of an export carries its freshness and later ones users, ids or a cursor, so
// skipping an empty one loses nothing.
function isHeartbeat(chunk: ExportUsersResponse): boolean {
  return chunk.freshness === undefined && chunk.users.length === 0 && chunk.ids.length === 0 && !chunk.cursor;
}

function decodeChunk(chunk: ExportUsersResponse): (User | string)[] {
  return chunk.ids.length > 0 ? chunk.ids : chunk.users.map((u) => JSON.parse(u.json) as User);
}
