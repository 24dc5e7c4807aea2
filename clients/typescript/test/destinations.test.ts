// Destinations through the client: a receiver on loopback verifies every delivery with the
// Standard Webhooks library, through a test message, a segment entry, pause/resume, a rotated
// secret and delete.

import assert from "node:assert/strict";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";

import { Webhook } from "standardwebhooks";

import { Client, NotFound, segmentsPb } from "../src/index.js";
import { env } from "./helpers.js";

const client = new Client(env("CLERK_INDEX_SERVER"), { apiKey: env("CLERK_INDEX_API_KEY") });
after(() => client.close());

type Body = { type: string; data: { events?: { type: string; user_id: string }[] } };

class Receiver {
  secret = "";
  bodies: Body[] = [];
  refused = 0;
  private readonly server = createServer(async (request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const payload = Buffer.concat(chunks).toString("utf8");
    try {
      this.bodies.push(new Webhook(this.secret).verify(payload, request.headers as Record<string, string>) as Body);
      response.writeHead(204).end();
    } catch {
      this.refused += 1;
      response.writeHead(401).end();
    }
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  close(): void {
    this.server.close();
  }

  entered(): string[] {
    return this.bodies
      .filter((b) => b.type === "segment.events")
      .flatMap((b) => b.data.events ?? [])
      .filter((e) => e.type === "segment.entered")
      .map((e) => e.user_id);
  }

  async waitEntered(userId: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.entered().includes(userId)) {
      assert.ok(Date.now() < deadline, `${userId} never arrived: ${JSON.stringify(this.bodies)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

test("a destination delivers verified events until deleted", async () => {
  const receiver = new Receiver();
  const url = await receiver.start();
  try {
    await client.createSegment("ts-dest", "public.ts_dest = true");
    const { destination, signingSecret } = await client.createDestination("ts-crm", url, ["ts-dest"], {
      batchDelayMs: 10,
    });
    assert.ok(signingSecret.startsWith("whsec_"));
    assert.equal(destination.name, "ts-crm");
    receiver.secret = signingSecret;
    const tested = await client.testDestination("ts-crm");
    assert.deepEqual([tested.statusCode, tested.error], [204, ""]);

    const page = await client.searchPage(undefined, { fields: ["id"], pageSize: 3 });
    const ids = page.users.map((u) => String(u.id));
    await client.updateMetadata(ids[0], { public: { ts_dest: true } });
    await receiver.waitEntered(ids[0]);
    const listed = (await client.listDestinations()).find((d) => d.name === "ts-crm");
    assert.equal(listed?.state, segmentsPb.DestinationState.ACTIVE);
    assert.ok((listed?.deliveredEvents ?? 0n) >= 1n);

    assert.equal((await client.pauseDestination("ts-crm")).state, segmentsPb.DestinationState.PAUSED);
    await client.updateMetadata(ids[1], { public: { ts_dest: true } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(!receiver.entered().includes(ids[1]));
    assert.equal((await client.resumeDestination("ts-crm")).state, segmentsPb.DestinationState.ACTIVE);
    await receiver.waitEntered(ids[1]);

    const updated = await client.updateDestination("ts-crm", { url: `${url}?v=2`, batchSize: 5 });
    assert.deepEqual([updated.url, updated.batchSize, updated.segments], [`${url}?v=2`, 5, ["ts-dest"]]);

    receiver.secret = await client.rotateDestinationSecret("ts-crm");
    await client.updateMetadata(ids[2], { public: { ts_dest: true } });
    await receiver.waitEntered(ids[2]);
    assert.equal(receiver.refused, 0);

    await client.deleteDestination("ts-crm");
    assert.ok(!(await client.listDestinations()).some((d) => d.name === "ts-crm"));
    const gone = await client.deleteDestination("ts-crm").catch((e) => e);
    assert.ok(gone instanceof NotFound, String(gone));
  } finally {
    receiver.close();
    await client.deleteSegment("ts-dest").catch(() => undefined);
  }
});
