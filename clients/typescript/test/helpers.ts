// The tests run against a live clerk-index server that tests/clients.rs starts, with keys
// CLERK_INDEX_API_KEY (every scope) and CLERK_INDEX_PUBLIC_KEY. CLERK_INDEX_PROTOCOL says which
// API they call: "grpc" (the gRPC port, CLERK_INDEX_SERVER) or "connect" (JSON on the HTTP port,
// CLERK_INDEX_HTTP); the same tests run over both.

import { createServer, connect, type Socket } from "node:net";

import type { ClientOptions } from "../src/index.js";

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through \`cargo test --test clients\``);
  return value;
}

export const protocol: "grpc" | "connect" = process.env.CLERK_INDEX_PROTOCOL === "connect" ? "connect" : "grpc";

/** The address (host:port) of the API the tests call. */
export const server = env(protocol === "connect" ? "CLERK_INDEX_HTTP" : "CLERK_INDEX_SERVER");

/** Client options for the protocol under test. */
export function options(apiKey?: string): ClientOptions {
  return { apiKey, protocol };
}

/** The next n items of an async iterator, failing instead of hanging past the timeout. */
export async function take<T>(iterator: AsyncIterator<T>, n: number, timeoutMs = 20_000): Promise<T[]> {
  const items: T[] = [];
  for (let i = 0; i < n; i++) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`got ${items.length} of ${n} items within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      const next = await Promise.race([iterator.next(), timeout]);
      if (next.done) throw new Error(`the stream ended after ${items.length} of ${n} items`);
      items.push(next.value);
    } finally {
      clearTimeout(timer);
    }
  }
  return items;
}

/**
 * A TCP proxy on 127.0.0.1 that cuts its first connection after `cut` bytes from the server (a
 * load balancer restart, a NAT timeout) and passes later ones through.
 */
export class DroppingProxy {
  connections = 0;
  private readonly server = createServer((down: Socket) => {
    this.connections += 1;
    const limit = this.connections === 1 ? this.cut : Infinity;
    const [host, port] = this.upstream.split(":");
    const up = connect(Number(port), host);
    let sent = 0;
    down.on("data", (data) => up.write(data));
    up.on("data", (data) => {
      down.write(data);
      sent += data.length;
      if (sent >= limit) {
        up.destroy();
        down.destroy();
      }
    });
    for (const [a, b] of [[down, up], [up, down]] as const) {
      a.on("close", () => b.destroy());
      a.on("error", () => b.destroy());
    }
  });

  constructor(private readonly upstream: string, private readonly cut: number) {}

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    if (!address || typeof address === "string") throw new Error("no address");
    return `127.0.0.1:${address.port}`;
  }

  close(): void {
    this.server.close();
  }
}
