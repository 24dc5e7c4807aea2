"""Cluster mode's costs per million users, measured: a replica holding the sync lease backfills a
generated population from the fake Clerk into the change log (NATS JetStream); then a fresh
replica bootstraps from the log with Clerk gone, and we time its catch-up (start to /readyz 200)
and weigh its index, the log, and the first replica's index. Writes bench/CLUSTER-RESULTS.md.

Run by bench/cluster-scaling (which builds the release binary and installs nats-server).

    bench/cluster-scaling --users 1000000
"""

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = str(ROOT / "target" / "release" / "clerk-index")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


def wait_until(what, check, timeout):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    sys.exit(f"{what}: not within {timeout} s")


def dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def metric(http, name):
    _, text = get(f"http://127.0.0.1:{http}/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def replica(work, name, nats_url, clerk_url, log):
    grpc, http = free_port(), free_port()
    data = work / name
    env = dict(os.environ, CLERK_SECRET_KEY="sk_test_fake_clerk", RUST_LOG="warn")
    process = subprocess.Popen(
        [BIN, "serve", "--grpc-addr", f"127.0.0.1:{grpc}", "--http-addr", f"127.0.0.1:{http}",
         "--clerk-api-url", clerk_url, "--clerk-rate-limit", "1000/1s",
         "--cluster", nats_url, "--replica-id", name, "--allow-unauthenticated",
         "--data-dir", str(data)],
        env=env, stdout=log, stderr=log)
    return process, http, data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    args = parser.parse_args()
    users = args.users
    work = Path(tempfile.mkdtemp(prefix="clerk-index-cluster-"))
    processes = []
    log = open(work / "processes.log", "w")
    try:
        nats_port, monitor_port = free_port(), free_port()
        processes.append(subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(nats_port), "-m", str(monitor_port),
             "-js", "-sd", str(work / "nats")], stdout=log, stderr=log))
        nats_url = f"nats://127.0.0.1:{nats_port}"
        clerk_port = free_port()
        clerk = subprocess.Popen(
            [BIN, "fake-clerk", "--users", str(users), "--addr", f"127.0.0.1:{clerk_port}"],
            stdout=log, stderr=log)
        processes.append(clerk)
        clerk_url = f"http://127.0.0.1:{clerk_port}"
        wait_until("the fake Clerk", lambda: get(f"{clerk_url}/v1/users/count")[0] is not None, 600)

        # The first replica takes the sync lease and copies Clerk into the log.
        first, first_http, first_data = replica(work, "first", nats_url, clerk_url, log)
        processes.append(first)
        started = time.monotonic()
        wait_until("the first replica's readiness",
                   lambda: get(f"http://127.0.0.1:{first_http}/readyz")[0] == 200, 3600)
        backfill_s = time.monotonic() - started
        clerk.terminate()
        clerk.wait()

        # A fresh replica, Clerk gone: replays the log.
        fresh, fresh_http, fresh_data = replica(work, "fresh", nats_url, "http://127.0.0.1:9", log)
        processes.append(fresh)
        started = time.monotonic()
        wait_until("the fresh replica's readiness",
                   lambda: get(f"http://127.0.0.1:{fresh_http}/readyz")[0] == 200, 3600)
        catch_up_s = time.monotonic() - started
        sequence = metric(fresh_http, "clerk_index_cluster_committed_sequence")
        rss_kib = int(open(f"/proc/{fresh.pid}/status").read().split("VmHWM:")[1].split()[0])
        _, jsz = get(f"http://127.0.0.1:{monitor_port}/jsz?streams=true")
        streams = {s["name"]: s["state"] for a in json.loads(jsz)["account_details"]
                   for s in a.get("stream_detail", [])}
        log_state = streams["clerk-index-changes"]
        index_bytes = dir_bytes(fresh_data / "index")
        first_index_bytes = dir_bytes(first_data / "index")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()

    per_million = 1_000_000 / users
    mib = 1024 * 1024
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    nats_version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip()
    report = f"""# Cluster mode: measured costs

Machine: {os.cpu_count()} vCPU ({cpu}), Linux {platform.release()}; {nats_version}, one server,
file storage, on the same machine as the replicas.

Produced by `bench/cluster-scaling --users {users}` on {time.strftime('%Y-%m-%d')}: a replica
holding the sync lease backfills {users:,} generated users from the fake Clerk (over HTTP, pages
of 500) into the change log; then a fresh replica, with Clerk unreachable, bootstraps from the
log. Release build, one run (these are minutes-long processes, not microbenchmarks).

| | {users:,} users | per million users |
|---|---|---|
| backfill into the log, until the first replica is ready | {backfill_s:.1f} s | {backfill_s * per_million:.1f} s |
| catch-up of a fresh replica from the log (start to ready) | {catch_up_s:.1f} s | {catch_up_s * per_million:.1f} s |
| catch-up rate | {users / catch_up_s:,.0f} users/s | |
| index size on the fresh replica | {index_bytes / mib:,.0f} MiB | {index_bytes / mib * per_million:,.0f} MiB |
| index size on the first replica | {first_index_bytes / mib:,.0f} MiB | {first_index_bytes / mib * per_million:,.0f} MiB |
| change log in JetStream ({log_state['messages']:,} messages) | {log_state['bytes'] / mib:,.0f} MiB | {log_state['bytes'] / mib * per_million:,.0f} MiB |
| peak RSS of the fresh replica | {rss_kib / 1024:,.0f} MiB | |

The fresh replica committed change-log sequence {int(sequence or 0):,}. Every replica holds the
whole index, so these numbers are per replica; the log is stored once per NATS stream replica.
"""
    out = ROOT / "bench" / "CLUSTER-RESULTS.md"
    out.write_text(report)
    print(report)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
