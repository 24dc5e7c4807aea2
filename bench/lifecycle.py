"""Lifecycle segments under load: 50 saved segments (a third of them time-driven) over N users
while webhooks arrive at a steady rate, and one destination following all of them, delivering to
a receiver on loopback. Two phases on the same release server, each sending the same kind of
webhooks at the same rate: first without segments, then with them. Measures:

- the cost of a time tick (the server's own tick counters, sampled every second);
- the latency from a change (the webhook's send time) to its Entered/Exited events arriving at
  the destination (p50/p99, by the receiver's clock: same machine);
- what the segments and the destination cost the webhook path (webhook response time p50/p99,
  phase two against phase one).

Writes bench/LIFECYCLE-RESULTS.md.

    bench/lifecycle                              # 1M users, 60 s per phase, 100 webhooks/s
    bench/lifecycle --users 100000 --seconds 20  # a short check of the harness
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, compile_protos, percentile, svix_headers  # noqa: E402
from soak import Server  # noqa: E402

PLANS = ["free", "pro", "team", "enterprise"]
TIERS = ["bronze", "silver", "gold", "platinum"]


def segments():
    """50 filters: 17 with relative times (time-driven), 33 on attributes only."""
    timed = [f"last_sign_in_at < now-{d}d" for d in (7, 14, 30, 60, 90, 180, 365)]
    timed += [f"last_active_at > now-{d}d" for d in (3, 7, 30, 90)]
    timed += [f'created_at > now-{d}d AND public.plan_type = "{p}"' for d, p in ((30, "pro"), (90, "team"), (365, "enterprise"))]
    timed += [f'last_sign_in_at < now-{d}d AND public.plan_type = "{p}"' for d, p in ((30, "pro"), (60, "team"), (90, "enterprise"))]
    plain = [f'public.plan_type = "{p}"' for p in PLANS]
    plain += [f'public.membership_tier = "{t}"' for t in TIERS]
    plain += [f'public.plan_type = "{p}" AND public.membership_tier = "{t}"' for p in PLANS for t in TIERS]
    plain += [f"private.ltv > {n}" for n in (100, 300, 1000, 3000)]
    plain += ['public.plan_type IN ["team", "enterprise"] AND private.ltv > 500']
    plain += ['public.user_preferences.theme = "dark"', 'public.user_preferences.language = "de"', "banned = true",
              'public.plan_type = "free" AND NOT public.membership_tier EXISTS']
    assert len(timed) == 17 and len(plain) == 33, (len(timed), len(plain))
    return [(f"t{i:02}", f) for i, f in enumerate(timed)] + [(f"a{i:02}", f) for i, f in enumerate(plain)]


class Receiver:
    """A destination receiver: the arrival time of every event, by user (answers 204 at once)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.arrivals = []  # (arrival wall time, event)
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                message = json.loads(body)
                with receiver.lock:
                    receiver.requests += 1
                    for event in message.get("data", {}).get("events", []):
                        receiver.arrivals.append((arrived, event))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def clerk_users(fake_url, count):
    """`count` users as Clerk's Backend API lists them (so the webhooks carry whole users)."""
    users = []
    while len(users) < count:
        request = urllib.request.Request(f"{fake_url}/v1/users?limit=500&offset={len(users)}",
                                         headers={"Authorization": "Bearer sk_test_fake_clerk"})
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read())
        page = page["data"] if isinstance(page, dict) else page
        if not page:
            break
        users.extend(page)
    return users[:count]


def send_webhooks(server, users, rate, seconds, phase):
    """user.updated for distinct users at `rate`/s, each moving to another plan: the send time of
    each user's change and the webhook response times (ms)."""
    sent, latencies, started = {}, [], time.monotonic()
    for n, user in enumerate(users[: int(rate * seconds)]):
        user = json.loads(json.dumps(user))
        plan = (user.get("public_metadata") or {}).get("plan_type")
        public = dict(user.get("public_metadata") or {})
        public["plan_type"] = PLANS[(PLANS.index(plan) + 1) % 4 if plan in PLANS else n % 4]
        user["public_metadata"] = public
        now_ms = int(time.time() * 1000)
        user["updated_at"] = now_ms
        body = json.dumps({"type": "user.updated", "object": "event", "data": user, "timestamp": now_ms}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/webhooks/clerk", data=body,
                                         headers=svix_headers(f"msg_life_{phase}_{n}", body), method="POST")
        sent[user["id"]] = time.time()
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status
        latencies.append((time.perf_counter() - began) * 1000)
        time.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
    return sent, latencies


def metric(server, name):
    """The sum of a metric's series in /metrics (0 when absent)."""
    total = 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


class TickSampler:
    """Samples the tick counters every second: each second's mean tick (ms), as the ticker saw it
    (waiting for the index writer included) and as work on the writer."""

    NAMES = ("clerk_index_segment_ticks_total", "clerk_index_segment_tick_seconds_total",
             "clerk_index_segment_tick_work_seconds_total")

    def __init__(self, server):
        self.server, self.stop = server, threading.Event()
        self.wall, self.work = [], []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def read(self):
        return [metric(self.server, name) for name in self.NAMES]

    def run(self):
        previous = self.first = self.read()
        while not self.stop.wait(1.0):
            now = self.read()
            ticks = now[0] - previous[0]
            if ticks > 0:
                self.wall.append((now[1] - previous[1]) / ticks * 1000)
                self.work.append((now[2] - previous[2]) / ticks * 1000)
            previous = now
        self.last = previous

    def finish(self):
        """Ticks, and the mean wall and work time per tick (ms)."""
        self.stop.set()
        self.thread.join()
        ticks = self.last[0] - self.first[0]
        if not ticks:
            return 0, 0.0, 0.0
        return ticks, (self.last[1] - self.first[1]) / ticks * 1000, (self.last[2] - self.first[2]) / ticks * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=60, help="length of each phase")
    parser.add_argument("--rate", type=float, default=100, help="webhooks per second")
    parser.add_argument("--resolution-ms", type=int, default=1000, help="time-driven segments' tick")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clerk-index-lifecycle-"))
    (work / "pb").mkdir()
    compile_protos(work / "pb")
    log = open(work / "server.log", "w")
    extra = ["--destinations-allow-private", "--destinations-allow-http", "--segment-time-resolution-ms", str(args.resolution_ms)]
    began = time.monotonic()
    server = Server(args.users, work, log, extra=extra)
    print(f"backfilled {args.users:,} users in {time.monotonic() - began:.0f} s", file=sys.stderr)
    needed = int(args.rate * args.seconds)
    users = clerk_users(server.fake_url, 2 * needed)
    pb, spb = server.pb, server.spb

    # Phase one: no segments.
    _, plain_latencies = send_webhooks(server, users[:needed], args.rate, args.seconds, "plain")
    print("phase one (no segments) done", file=sys.stderr)

    # Phase two: 50 segments and a destination following them all.
    created = time.monotonic()
    for name, text in segments():
        server.segments.CreateSegment(spb.CreateSegmentRequest(name=name, filter=pb.FilterSpec(expression=text)))
    create_seconds = time.monotonic() - created
    receiver = Receiver()
    server.segments.CreateDestination(spb.CreateDestinationRequest(
        name="bench", url=receiver.url, segments=[name for name, _ in segments()]))
    time.sleep(3)  # the first ticks after creating (a catch-up from the creation instant)
    with receiver.lock:
        receiver.arrivals.clear()
    ticks = TickSampler(server)
    sent, segment_latencies = send_webhooks(server, users[needed:], args.rate, args.seconds, "segments")
    time.sleep(3)  # the last batches
    tick_count, tick_wall, tick_work = ticks.finish()
    print("phase two (50 segments, one destination) done", file=sys.stderr)

    with receiver.lock:
        arrivals = list(receiver.arrivals)
        requests = receiver.requests
    listed = server.segments.ListDestinations(spb.ListDestinationsRequest()).destinations[0]
    print(f"received {len(arrivals):,} events in {requests:,} requests; destination {listed.state} "
          f"delivered {listed.delivered_events:,} last error {listed.last_error!r}", file=sys.stderr)
    if arrivals:
        print(f"an event: {arrivals[0][1]}", file=sys.stderr)
    by_change = [(at - sent[e["user_id"]]) * 1000 for at, e in arrivals
                 if e.get("cause") == "webhook" and e.get("user_id") in sent]
    by_time = sum(1 for _, e in arrivals if e.get("cause") == "time")
    moved = {e["user_id"] for _, e in arrivals if e.get("cause") == "webhook"}
    lag = metric(server, "clerk_index_destination_lag_events")
    def spread(values):
        return (percentile(values, 99), max(values)) if values else (0.0, 0.0)

    work_p99, work_max = spread(ticks.work)
    wall_p99, wall_max = spread(ticks.wall)
    p50, p99 = percentile(by_change, 50), percentile(by_change, 99)
    w = {k: (percentile(v, 50), percentile(v, 99)) for k, v in (("plain", plain_latencies), ("segments", segment_latencies))}

    report = [
        "# Lifecycle segments under load",
        "",
        f"`bench/lifecycle --users {args.users} --seconds {args.seconds:g} --rate {args.rate:g} --resolution-ms "
        f"{args.resolution_ms}`, release build, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}. "
        f"{args.users:,} users backfilled from the fake Clerk; webhooks are `user.updated` for distinct users, each moved to "
        "another plan; 50 saved segments (17 with relative times: `last_sign_in_at < now-Nd`, `last_active_at > now-Nd`, "
        "`created_at > now-Nd AND plan`, ...; 33 on plan, tier, their pairs and `private.ltv`), one destination following "
        "all 50 (default batching: up to 100 events, 200 ms), delivering to a receiver on loopback.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| time tick over {args.users:,} users, work on the writer: mean ({tick_count:.0f} ticks) | {tick_work:.2f} ms | < 50 ms |",
        f"| time tick, work: p99 / slowest of the per-second means | {work_p99:.2f} / {work_max:.2f} ms | < 50 ms |",
        f"| time tick, waiting for the writer included: mean | {tick_wall:.2f} ms | |",
        f"| time tick, waiting included: p99 / slowest of the per-second means | {wall_p99:.2f} / {wall_max:.2f} ms | |",
        f"| change → delivered event, p50 | {p50:.0f} ms | |",
        f"| change → delivered event, p99 | {p99:.0f} ms | < 1,000 ms |",
        f"| webhook response p50: no segments → 50 segments | {w['plain'][0]:.2f} → {w['segments'][0]:.2f} ms "
        f"(× {w['segments'][0] / w['plain'][0]:.2f}) | |",
        f"| webhook response p99: no segments → 50 segments | {w['plain'][1]:.2f} → {w['segments'][1]:.2f} ms "
        f"(× {w['segments'][1] / w['plain'][1]:.2f}) | |",
        "",
        f"Traffic in phase two: {len(sent):,} webhooks; {len(by_change):,} events caused by them reached the receiver "
        f"({len(moved):,} users) in {requests:,} requests, {by_time:,} caused by time; destination lag at the end: "
        f"{lag:.0f} events. Creating the 50 segments took {create_seconds:.1f} s.",
        "",
        "The change time is taken just before the webhook is sent and the arrival when the receiver reads the request, both "
        "by the same clock. The batch delay (200 ms by default) is part of the latency: a destination that wants less "
        "sets a smaller `batch_delay_ms`. Ticks run every second here (`--segment-time-resolution-ms 1000`, the "
        "default is a minute), so each looks at a second of crossings. A tick runs on the index writer "
        "between webhook writes: its work is the evaluation itself, the rest of its time is the wait for the writer "
        "(a commit in progress, queued writes).",
        "",
    ]
    (ROOT / "bench" / "LIFECYCLE-RESULTS.md").write_text("\n".join(report))
    print("\n".join(report))
    server.process.terminate()
    server.process.wait(timeout=60)
    server.fake.terminate()


if __name__ == "__main__":
    main()
