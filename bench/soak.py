"""The soak benchmark: webhooks at a steady rate with concurrent counts, searches, exports and
watches (opened and cancelled over and over) against one release server, sampling its memory,
open files, threads and query latency. After the warm-up, each must grow by less than 10%
between the first and the last part of the run. Writes bench/SOAK-RESULTS.md.

    bench/soak                              # 20k users, 30 minutes (5 of warm-up), 200 webhooks/s
    bench/soak --minutes 5 --warmup 1       # a short check of the harness
"""

import argparse
import base64
import hashlib
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BIN, ROOT, SECRET, BearerToken, compile_protos, free_port, percentile, rss_kib, spawn, svix_headers, wait_until  # noqa: E402

GROWTH_LIMIT = 0.10


class Server:
    """A release server backfilled from the fake Clerk, with a key that may read and manage segments."""

    def __init__(self, users, work, log, wrap=(), extra=()):
        fake_port, self.grpc_port, self.http_port = free_port(), free_port(), free_port()
        self.fake_url = f"http://127.0.0.1:{fake_port}"
        self.fake = spawn([BIN, "fake-clerk", "--users", str(users), "--addr", f"127.0.0.1:{fake_port}"], stdout=log, stderr=log)
        wait_until(lambda: socket.create_connection(("127.0.0.1", fake_port)).close() or True, 60, "the fake Clerk")
        self.key = "cki_soak_" + base64.urlsafe_b64encode(os.urandom(20)).decode().rstrip("=")
        line = f"soak public,private,unsafe,segments sha256:{hashlib.sha256(self.key.encode()).hexdigest()}"
        env = dict(os.environ, CLERK_SECRET_KEY="sk_test_fake_clerk", CLERK_WEBHOOK_SIGNING_SECRET=SECRET,
                   CLERK_INDEX_API_KEYS=line, RUST_LOG="warn")
        self.process = spawn(
            [*wrap, BIN, "serve", "--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--http-addr", f"127.0.0.1:{self.http_port}",
             "--clerk-api-url", f"http://127.0.0.1:{fake_port}", "--data-dir", str(work / "data"),
             "--clerk-rate-limit", "1000000/1s", "--log-format", "json", *extra],
            stdout=log, stderr=log, env=env)

        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                return r.status == 200

        wait_until(ready, 3600, "the backfill")
        from clerkindex.v1 import segments_pb2, segments_pb2_grpc, user_index_pb2, user_index_pb2_grpc

        self.pb, self.spb = user_index_pb2, segments_pb2
        self.channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}"), BearerToken(self.key))
        self.users = user_index_pb2_grpc.UserIndexStub(self.channel)
        self.segments = segments_pb2_grpc.SegmentsStub(self.channel)

    def sample(self):
        pid = self.process.pid
        return dict(
            rss_mib=rss_kib(pid, "VmRSS") / 1024,
            open_files=len(os.listdir(f"/proc/{pid}/fd")),
            threads=rss_kib(pid, "Threads"),
            column_cache_mib=self.metric("clerk_index_column_cache_bytes") / 2**20,
            # Heap and the like, against pages of mapped files (the index) the kernel can drop.
            anon_mib=rss_kib(pid, "RssAnon") / 1024,
            file_mib=rss_kib(pid, "RssFile") / 1024,
            index_mib=self.metric("clerk_index_index_size_bytes") / 2**20,
        )

    def metric(self, name):
        """One unlabelled value from /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0


class Load:
    """Every kind of traffic at once, until `stop` is set; query latencies go to `latencies`."""

    def __init__(self, server, ids, rate):
        self.server, self.ids, self.rate = server, ids, rate
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies = []
        self.counts = dict(webhooks=0, webhook_failures=0, queries=0, exports=0, watch_events=0, watches_opened=0)

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def webhooks(self):
        sent, started = 0, time.monotonic()
        while not self.stop.is_set():
            user_id = random.choice(self.ids)
            tag = random.choice(["hot", "cold", "warm"])
            now = int(time.time() * 1000)
            user = {"id": user_id, "object": "user", "created_at": 1, "updated_at": now,
                    "public_metadata": {"soak_tag": tag, "n": sent}, "private_metadata": {}, "unsafe_metadata": {},
                    "email_addresses": [], "phone_numbers": [], "external_accounts": []}
            body = json.dumps({"type": "user.updated", "object": "event", "data": user, "timestamp": now}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{self.server.http_port}/webhooks/clerk", data=body,
                                             headers=svix_headers(f"msg_soak_{sent}_{now}", body), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    ok = response.status == 200
            except Exception:
                ok = False
            self.count("webhooks")
            if not ok:
                self.count("webhook_failures")
            sent += 1
            time.sleep(max(0.0, started + sent / self.rate - time.monotonic()))

    def queries(self):
        pb = self.server.pb
        filters = ['public.soak_tag = "hot"', "banned = false AND public.n > 100", 'email_domain = "example.com"']
        while not self.stop.is_set():
            text = random.choice(filters)
            started = time.perf_counter()
            if random.random() < 0.5:
                self.server.users.CountUsers(pb.CountUsersRequest(filter=pb.FilterSpec(expression=text)))
            else:
                self.server.users.SearchUsers(pb.SearchUsersRequest(
                    filter=pb.FilterSpec(expression=text), sort=pb.SortSpec(path="created_at", descending=True), page_size=50))
            with self.lock:
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.counts["queries"] += 1

    def exports(self):
        pb = self.server.pb
        while not self.stop.is_set():
            for _chunk in self.server.users.ExportUsers(pb.ExportUsersRequest(chunk_size=1000)):
                pass
            self.count("exports")
            self.stop.wait(5)

    def watches(self):
        spb = self.server.spb
        while not self.stop.is_set():
            calls = [self.server.segments.WatchSegment(spb.WatchSegmentRequest(name="soak-hot")) for _ in range(20)]
            self.count("watches_opened", len(calls))

            def drain(call):
                try:
                    for _event in call:
                        self.count("watch_events")
                except grpc.RpcError:
                    pass

            readers = [threading.Thread(target=drain, args=(c,), daemon=True) for c in calls]
            for r in readers:
                r.start()
            self.stop.wait(15)
            for call in calls:
                call.cancel()

    def run(self):
        threads = [threading.Thread(target=t, daemon=True) for t in
                   (self.webhooks, self.webhooks, self.queries, self.queries, self.exports, self.watches)]
        self.rate /= 2  # two webhook senders
        for t in threads:
            t.start()
        return threads


JUDGED = ("rss_mib", "open_files", "threads", "p99_ms")


def growth(first, last):
    return (last - first) / first if first else 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--wrap", default="", help="a command to run the server under, e.g. 'heaptrack -o /tmp/soak' "
                        "(the samples then measure the wrapper's process, not the server)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clerk-index-soak-"))
    (work / "pb").mkdir()
    compile_protos(work / "pb")
    log = open(work / "server.log", "w")
    server = Server(args.users, work, log, args.wrap.split())
    print(f"backfilled {args.users} users; soaking for {args.minutes} minutes", file=sys.stderr)
    server.segments.CreateSegment(server.spb.CreateSegmentRequest(
        name="soak-hot", filter=server.pb.FilterSpec(expression='public.soak_tag = "hot"')))
    everyone = server.pb.ExportUsersRequest(ids_only=True, chunk_size=5000)
    ids = [i for chunk in server.users.ExportUsers(everyone) for i in chunk.ids]
    load = Load(server, ids, args.rate)
    load.run()
    samples, started = [], time.monotonic()
    end = started + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(args.every)
        with load.lock:
            window, load.latencies = load.latencies, []
        sample = server.sample()
        sample["minute"] = (time.monotonic() - started) / 60
        sample["p99_ms"] = percentile(window, 99) if window else 0.0
        samples.append(sample)
        print(json.dumps(sample), file=sys.stderr)
    load.stop.set()
    time.sleep(2)
    after = [s for s in samples if s["minute"] >= args.warmup]
    span = max(1, len(after) // 5)  # the first and the last fifth of the run after the warm-up
    first, last = after[:span], after[-span:]

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    rows, failed = [], []
    measures = (("rss_mib", "RSS (MiB)"), ("open_files", "open files"), ("threads", "threads"), ("p99_ms", "query p99 (ms)"),
                ("anon_mib", "of which anonymous (MiB), not judged"), ("file_mib", "of which mapped files (MiB), not judged"),
                ("index_mib", "index on disk (MiB), not judged"), ("column_cache_mib", "column cache (MiB), not judged"))
    for key, name in measures:
        a, b = mean(first, key), mean(last, key)
        g = growth(a, b)
        rows.append(f"| {name} | {a:,.1f} | {b:,.1f} | {g * 100:+.1f}% |")
        if g >= GROWTH_LIMIT and key in JUDGED:
            failed.append(name)
    verdict = "every measure grew by less than 10%" if not failed else "grew by 10% or more: " + ", ".join(failed)
    report = [
        "# Soak benchmark",
        "",
        f"`bench/soak --users {args.users} --minutes {args.minutes:g} --warmup {args.warmup:g} --rate {args.rate:g}` on "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}: webhooks at {args.rate:g}/s (user.updated, two senders), two "
        "threads of counts and searches, a full export every 5 s, 20 watches reopened every 15 s.",
        "",
        "| measure | first fifth after warm-up | last fifth | growth |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Result: {verdict}.",
        "",
        "Traffic: " + ", ".join(f"{k} {v:,}" for k, v in load.counts.items()) + ".",
        "",
    ]
    (ROOT / "bench" / "SOAK-RESULTS.md").write_text("\n".join(report))
    print("\n".join(report))
    server.process.terminate()
    server.process.wait(timeout=60)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
