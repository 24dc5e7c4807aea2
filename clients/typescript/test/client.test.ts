// The client's layer against a live server: filters in both spellings, pages, exports resumed
// after a dropped connection, watches resumed from a checkpoint, and typed errors.

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import {
  allOf,
  anyOf,
  Client,
  date,
  field,
  FileCheckpoint,
  type Filter,
  InvalidFilter,
  not,
  NotFound,
  org,
  inSegment,
  PermissionDenied,
  segmentsPb,
  stats,
  terms,
  Unauthenticated,
  VersionConflict,
} from "../src/index.js";
import { DroppingProxy, env, options, server, take } from "./helpers.js";

const client = new Client(server, options(env("CLERK_INDEX_API_KEY")));
after(() => client.close());

const pairs: [Filter, string][] = [
  [field("public.plan_type").eq("pro"), 'public.plan_type = "pro"'],
  [field("public.plan_type").ne("pro"), 'public.plan_type != "pro"'],
  [field("banned").eq(true), "banned = true"],
  [field("public.membership_tier").in(["gold", "platinum"]), 'public.membership_tier IN ["gold", "platinum"]'],
  [field("private.ltv").gt(500), "private.ltv > 500"],
  [field("private.ltv").between(100, 200.5), "private.ltv BETWEEN 100 AND 200.5"],
  [field("created_at").gte(date("now-365d")), "created_at >= now-365d"],
  [field("created_at").lt(new Date("2030-01-01T00:00:00Z")), "created_at < 2030-01-01"],
  [field("public.plan_type").exists(), "public.plan_type EXISTS"],
  [field("email").startsWith("a"), 'email STARTS WITH "a"'],
  [
    field("public.plan_type").eq("pro").and(field("banned").eq(true).not()).or(field("private.ltv").lte(10)),
    '(public.plan_type = "pro" AND NOT banned = true) OR private.ltv <= 10',
  ],
  [
    allOf(anyOf(field("public.plan_type").eq("free"), field("public.plan_type").eq("pro")), not(field("public.membership_tier").eq("gold"))),
    '(public.plan_type = "free" OR public.plan_type = "pro") AND NOT public.membership_tier = "gold"',
  ],
];

test("built filters count like their text", async () => {
  const total = await client.count();
  assert.ok(total > 1000n);
  let nonzero = 0;
  for (const [built, text] of pairs) {
    const n = await client.count(built);
    assert.equal(n, await client.count(text), text);
    assert.ok(n <= total);
    if (n > 0n) nonzero += 1;
  }
  assert.ok(nonzero >= pairs.length - 2, "most pairs should match someone, or they prove little");
});

test("search follows pages and agrees with export", async () => {
  const text = 'public.plan_type = "pro"';
  const paged: string[] = [];
  for await (const user of client.search(text, { fields: ["id"], pageSize: 37 })) paged.push(user.id);
  const exported = await client.export(text, { idsOnly: true, chunkSize: 100 }).toArray();
  assert.equal(BigInt(paged.length), await client.count(text));
  assert.ok(paged.length > 37);
  assert.deepEqual(paged, exported);
  assert.deepEqual(exported, [...exported].sort());
  const newest: string[] = [];
  for await (const user of client.search(undefined, { sort: "-created_at", fields: ["id", "created_at"], limit: 5 })) {
    newest.push(String(user.created_at));
  }
  assert.equal(newest.length, 5);
  assert.deepEqual(newest, [...newest].sort((a, b) => Number(b) - Number(a)));
});

test("facets", async () => {
  const response = await client.facet("banned = false", terms("public.plan_type", 3), stats("private.ltv", [50]));
  assert.equal(response.matched, await client.count("banned = false"));
  const result = response.facets[0].result;
  assert.equal(result.case, "terms");
  const buckets = result.case === "terms" ? result.value.buckets : [];
  assert.ok(buckets.length >= 1 && buckets.length <= 3);
  for (const bucket of buckets) {
    const plan = bucket.value?.kind.case === "string" ? bucket.value.kind.value : "";
    assert.equal(bucket.count, await client.count(field("banned").eq(false).and(field("public.plan_type").eq(plan))));
  }
});

test("an export resumes after the connection drops", async () => {
  const fields = ["id", "first_name", "last_name", "public.plan_type", "private.ltv"];
  const expected = (await client.export(undefined, { fields, chunkSize: 50 }).toArray()).map((u) => u.id);
  const proxy = new DroppingProxy(server, 64 * 1024);
  const through = new Client(await proxy.listen(), options(env("CLERK_INDEX_API_KEY")));
  try {
    const exported = through.export(undefined, { fields, chunkSize: 50 });
    const got = (await exported.toArray()).map((u) => u.id);
    assert.ok(exported.resumes >= 1, "the proxy should have cut the first stream");
    assert.ok(proxy.connections >= 2);
    assert.deepEqual(got, expected);
    assert.equal(exported.total, BigInt(expected.length));
  } finally {
    through.close();
    proxy.close();
  }
});

test("a watch resumes from its checkpoint", async () => {
  const segment = "ts-watch";
  await client.createSegment(segment, field("public.ts_watch").eq(true));
  const ids: string[] = [];
  for await (const user of client.search(undefined, { fields: ["id"], limit: 3 })) ids.push(user.id);
  for (const id of ids.slice(0, 2)) await client.updateMetadata(id, { public: { ts_watch: true } });
  const checkpoint = new FileCheckpoint(join(await mkdtemp(join(tmpdir(), "ts-watch-")), "watch.seq"));
  const events = client.watch(segment, { checkpoint, after: 0n });
  // Creating the segment is an event of its own (no user); the users' follow.
  const [created, first, second] = await take(events, 3);
  assert.equal(created.kind, segmentsPb.SegmentEvent_Kind.SEGMENT_UPDATED);
  assert.equal(created.userId, "");
  assert.deepEqual([first.userId, second.userId], ids.slice(0, 2));
  assert.equal(first.kind, segmentsPb.SegmentEvent_Kind.ENTERED);
  await events.return(undefined);
  // The first event was handled (the next was asked for), the second was not.
  assert.equal(await checkpoint.load(), first.sequence);
  await client.updateMetadata(ids[2], { public: { ts_watch: true } });
  const resumed = client.watch(segment, { checkpoint });
  const [again, third] = await take(resumed, 2);
  await resumed.return(undefined);
  assert.deepEqual([again.userId, again.sequence], [second.userId, second.sequence]);
  assert.equal(third.userId, ids[2]);
  assert.ok(third.sequence > second.sequence);
  assert.equal(await checkpoint.load(), second.sequence);
  await client.deleteSegment(segment);
});

test("a quiet watch passes over heartbeats to the next event", async () => {
  // Over the JSON API a quiet stream carries heartbeats (empty messages, every 200 ms in these
  // tests); over gRPC it carries none. Either way the next thing the watch yields is the event.
  await client.createSegment("ts-quiet", field("public.ts_quiet").eq(true));
  const ids: string[] = [];
  for await (const user of client.search(undefined, { fields: ["id"], limit: 1 })) ids.push(user.id);
  const events = client.watch("ts-quiet", { after: 0n });
  const [created] = await take(events, 1);
  assert.equal(created.kind, segmentsPb.SegmentEvent_Kind.SEGMENT_UPDATED);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await client.updateMetadata(ids[0], { public: { ts_quiet: true } });
  const [entered] = await take(events, 1);
  await events.return(undefined);
  assert.deepEqual([entered.kind, entered.userId], [segmentsPb.SegmentEvent_Kind.ENTERED, ids[0]]);
  await client.deleteSegment("ts-quiet");
});

test("watchMany follows two segments on one stream until both are deleted", async () => {
  const names = ["ts-many-a", "ts-many-b"];
  for (const name of names) await client.createSegment(name, field(`public.${name.replaceAll("-", "_")}`).eq(true));
  const ids: string[] = [];
  for await (const user of client.search(undefined, { fields: ["id"], limit: 1 })) ids.push(user.id);
  const events = client.watchMany(names, { after: 0n });
  await client.updateMetadata(ids[0], { public: { ts_many_a: true, ts_many_b: true } });
  const entered: string[] = [];
  while (entered.length < 2) {
    const { value: event } = await events.next();
    if (event?.kind === segmentsPb.SegmentEvent_Kind.ENTERED) entered.push(`${event.segment}:${event.userId}`);
  }
  assert.deepEqual(entered.sort(), names.map((n) => `${n}:${ids[0]}`));
  for (const name of names) await client.deleteSegment(name);
  // The stream ends by itself after the second deletion.
  const deleted: string[] = [];
  for await (const event of events) {
    if (event.kind === segmentsPb.SegmentEvent_Kind.SEGMENT_DELETED) deleted.push(event.segment);
  }
  assert.deepEqual(deleted, names);
});

test("org brackets are built like their text", async () => {
  const built = org(allOf(field("role").eq("org:admin"), field("public.plan").eq("enterprise")));
  const text = 'org[role = "org:admin" AND public.plan = "enterprise"]';
  assert.equal(await client.count(built), await client.count(text));
  assert.ok((await client.count(text)) > 0);
  assert.equal(await client.count(not(built)), (await client.count()) - (await client.count(text)));
  // A path of the user, not of a membership, is refused inside the brackets.
  const refused = await client.count(org(field("banned").eq(true))).catch((e) => e);
  assert.ok(refused instanceof InvalidFilter, String(refused));
});

test("organization metadata is read back by every member", async () => {
  const result = (await client.facet(undefined, terms("org.id", 1))).facets[0].result;
  assert.equal(result.case, "terms");
  const bucket = result.case === "terms" ? result.value.buckets[0] : undefined;
  const orgId = bucket?.value?.kind.case === "string" ? bucket.value.kind.value : "";
  const updated = await client.updateOrganizationMetadata(orgId, { public: { ts_plan: "written" } });
  assert.equal((updated.public_metadata as Record<string, unknown>).ts_plan, "written");
  const written = org(allOf(field("id").eq(orgId), field("public.ts_plan").eq("written")));
  assert.equal(await client.count(written), bucket?.count);
});

test("a user's segments are listed", async () => {
  const page = await client.searchPage('public.plan_type = "pro"', { fields: ["id"], pageSize: 1 });
  const userId = String(page.users[0].id);
  await client.createSegment("ts-user-pro", 'public.plan_type = "pro"');
  try {
    const segments = await client.userSegments(userId);
    assert.ok(segments.includes("ts-user-pro"), String(segments));
    assert.equal(await client.count(inSegment("ts-user-pro")), await client.count('IN SEGMENT "ts-user-pro"'));
    const history = await client.segmentHistory("ts-user-pro");
    assert.equal(history.size, await client.countSegment("ts-user-pro"));
    assert.equal(history.periods.at(-1)?.size, history.size);
    assert.equal((await client.segmentHistory("ts-user-pro", { hourly: true })).periods.at(-1)?.size, history.size);
    const missing = await client.userSegments("user_unknown").catch((e) => e);
    assert.ok(missing instanceof NotFound, String(missing));
  } finally {
    await client.deleteSegment("ts-user-pro");
  }
});

test("validateFilter suggests the path meant", async () => {
  const answer = await client.validateFilter('public.plan_typ = "pro"');
  assert.equal(answer.expression, 'public.plan_typ = "pro"');
  assert.deepEqual(
    answer.warnings.map((w) => w.suggestions),
    [["public.plan_type"]],
  );
  assert.ok((await client.validateFilter("created_at > now-7d")).timeDriven);
  const invalid = await client.validateFilter("public.plan_type = ").catch((e) => e);
  assert.ok(invalid instanceof InvalidFilter, String(invalid));
});

test("errors are typed from their details", async () => {
  const text = 'public.plan_type = "pro" AND AND banned = true';
  const invalid = await client.count(text).catch((e) => e);
  assert.ok(invalid instanceof InvalidFilter, String(invalid));
  assert.equal(invalid.reason, "INVALID_FILTER");
  assert.equal(invalid.position, text.indexOf("AND AND") + 4);
  assert.equal(invalid.fieldViolations[0].field, "filter.expression");

  const missing = await client.getUser("user_does_not_exist").catch((e) => e);
  assert.ok(missing instanceof NotFound);
  assert.deepEqual([missing.reason, missing.resourceName], ["USER_NOT_FOUND", "user_does_not_exist"]);

  const segment = await client.createSegment("ts-errors", 'public.plan_type = "pro"');
  await client.updateSegment("ts-errors", { description: "first", expectedVersion: segment.version });
  const conflict = await client
    .updateSegment("ts-errors", { description: "second", expectedVersion: segment.version })
    .catch((e) => e);
  assert.ok(conflict instanceof VersionConflict);
  assert.equal(conflict.actualVersion, segment.version + 1n);
  await client.deleteSegment("ts-errors");

  const anonymousClient = new Client(server, options());
  const anonymous = await anonymousClient.count().catch((e) => e);
  anonymousClient.close();
  assert.ok(anonymous instanceof Unauthenticated);
  assert.equal(anonymous.reason, "API_KEY_MISSING");
  const publicOnly = new Client(server, options(env("CLERK_INDEX_PUBLIC_KEY")));
  assert.deepEqual((await publicOnly.describeCaller()).scopes, ["public"]);
  const denied = await publicOnly.count("private.ltv > 1").catch((e) => e);
  publicOnly.close();
  assert.ok(denied instanceof PermissionDenied);
  assert.equal(denied.reason, "SCOPE_MISSING");
});
