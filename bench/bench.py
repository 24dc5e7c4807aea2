#!/usr/bin/env python3
"""clerk-index vs PostgreSQL 15 vs DuckDB, same users, same questions, same run.

For each size: the fake Clerk serves the generated population, `clerk-index serve` backfills it
(separate processes, real HTTP), the same users are loaded into PostgreSQL (JSONB + GIN
jsonb_path_ops + btree expression indexes, tuned, prewarmed) and DuckDB (flattened typed
columns), and a query mix runs against all three from this process (the service over real gRPC).
Every answer is checked equal across engines before its timing counts. Writes bench/RESULTS.md.
Run through bench/run, which installs what this needs.
"""

import argparse
import base64
import collections
import concurrent.futures
import hashlib
import hmac
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb
import grpc
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "clerk-index"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = "whsec_" + base64.b64encode(b"clerk-index-benchmark-secret-32b").decode()
PROCESSES = []


def spawn(command, **kwargs):
    process = subprocess.Popen(command, **kwargs)
    PROCESSES.append(process)
    return process


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def compile_protos(out):
    from grpc_tools import protoc

    protos = [str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto")]
    include = str(Path(protoc.__file__).parent / "_proto")
    code = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + protos
    )
    if code != 0:
        raise RuntimeError("protoc failed")
    sys.path.insert(0, str(out))


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def rss_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def mib(n):
    return f"{n / 1048576:,.0f} MiB"


# ---------------------------------------------------------------------------------------------
# The query mix. Each query has the service's request and the SQL both peers answer it with.
# `kind`: count | facet | ids (a set) | top (an ordered list).

QUERIES = [
    dict(
        name="equality count",
        kind="count",
        filter='public.plan_type = "pro"',
        pg="""SELECT count(*) FROM users WHERE public_metadata @> '{"plan_type": "pro"}'""",
        duck="SELECT count(*) FROM users WHERE plan_type = 'pro'",
    ),
    dict(
        name="IN + numeric range",
        kind="count",
        filter='public.membership_tier IN ["gold", "platinum"] AND public.points >= 2000',
        pg="""SELECT count(*) FROM users WHERE (public_metadata @> '{"membership_tier": "gold"}'
              OR public_metadata @> '{"membership_tier": "platinum"}') AND points(public_metadata) >= 2000""",
        duck="SELECT count(*) FROM users WHERE membership_tier IN ('gold', 'platinum') AND points >= 2000",
    ),
    dict(
        name="two date ranges",
        kind="count",
        filter="created_at >= 2025-01-01 AND last_sign_in_at >= 2026-06-01",
        pg="SELECT count(*) FROM users WHERE created_at >= '2025-01-01Z' AND last_sign_in_at >= '2026-06-01Z'",
        duck="SELECT count(*) FROM users WHERE created_at >= TIMESTAMP '2025-01-01' AND last_sign_in_at >= TIMESTAMP '2026-06-01'",
    ),
    dict(
        name="array contains",
        kind="count",
        filter='public.favorite_genre = "sci-fi"',
        pg="""SELECT count(*) FROM users WHERE public_metadata @> '{"favorite_genre": ["sci-fi"]}'""",
        duck="SELECT count(*) FROM users WHERE list_contains(favorite_genre, 'sci-fi')",
    ),
    dict(
        name="missing key AND range",
        kind="count",
        filter="NOT public.beta_cohort EXISTS AND public.points < 100",
        pg="SELECT count(*) FROM users WHERE public_metadata -> 'beta_cohort' IS NULL AND points(public_metadata) < 100",
        duck="SELECT count(*) FROM users WHERE beta_cohort IS NULL AND points < 100",
    ),
    dict(
        name="facet under a filter",
        kind="facet",
        filter="banned = false AND created_at >= 2025-01-01",
        facet="public.plan_type",
        pg="""SELECT public_metadata ->> 'plan_type', count(*) FROM users
              WHERE NOT banned AND created_at >= '2025-01-01Z' AND jsonb_typeof(public_metadata -> 'plan_type') = 'string'
              GROUP BY 1""",
        duck="""SELECT plan_type, count(*) FROM users WHERE NOT banned AND created_at >= TIMESTAMP '2025-01-01'
                AND plan_type IS NOT NULL GROUP BY 1""",
    ),
    dict(
        name="export ids of a ~11% segment",
        kind="ids",
        filter='public.plan_type = "team"',
        pg="""SELECT id FROM users WHERE public_metadata @> '{"plan_type": "team"}'""",
        duck="SELECT id FROM users WHERE plan_type = 'team'",
    ),
    dict(
        name="export names and metadata of a ~11% segment",
        kind="rows",
        filter='public.plan_type = "team"',
        fields=["id", "first_name", "last_name", "public.membership_tier", "public.points", "private.ltv"],
        pg="""SELECT id, first_name, last_name,
                     CASE WHEN jsonb_typeof(public_metadata -> 'membership_tier') = 'string'
                          THEN public_metadata ->> 'membership_tier' END,
                     points(public_metadata),
                     CASE WHEN jsonb_typeof(private_metadata -> 'ltv') = 'number'
                          THEN (private_metadata ->> 'ltv')::double precision END
              FROM users WHERE public_metadata @> '{"plan_type": "team"}'""",
        duck="SELECT id, first_name, last_name, membership_tier, points, ltv FROM users WHERE plan_type = 'team'",
    ),
    dict(
        name="top-50 by points under a filter",
        kind="top",
        filter='public.membership_tier = "gold"',
        sort="public.points",
        pg="""SELECT id FROM users WHERE public_metadata @> '{"membership_tier": "gold"}'
              ORDER BY points(public_metadata) DESC NULLS LAST, id LIMIT 50""",
        duck="SELECT id FROM users WHERE membership_tier = 'gold' ORDER BY points DESC NULLS LAST, id LIMIT 50",
    ),
    dict(
        name="email prefix",
        kind="count",
        filter='primary_email STARTS WITH "emma."',
        pg="SELECT count(*) FROM users WHERE primary_email LIKE 'emma.%'",
        duck="SELECT count(*) FROM users WHERE starts_with(primary_email, 'emma.')",
    ),
    dict(
        name="nested OR / NOT",
        kind="count",
        filter='(public.plan_type = "team" OR public.membership_tier = "platinum") AND NOT (banned = true OR public.user_preferences.theme = "dark")',
        pg="""SELECT count(*) FROM users WHERE (public_metadata @> '{"plan_type": "team"}' OR public_metadata @> '{"membership_tier": "platinum"}')
              AND NOT (banned OR public_metadata @> '{"user_preferences": {"theme": "dark"}}')""",
        duck="""SELECT count(*) FROM users WHERE (plan_type = 'team' OR membership_tier = 'platinum')
                AND NOT (banned OR coalesce(theme = 'dark', false))""",
    ),
]


def normalize(kind, rows):
    """SQL rows -> the comparable answer."""
    if kind == "count":
        return rows[0][0]
    if kind == "facet":
        return {k: v for k, v in rows}
    if kind == "ids":
        return sorted(r[0] for r in rows)
    if kind == "rows":
        return sorted(row_of(*r) for r in rows)
    return [r[0] for r in rows]


def row_of(id, first_name, last_name, tier, points, ltv):
    """One exported user as every engine's answer is compared: numbers as floats."""
    number = lambda v: None if v is None else float(v)  # noqa: E731
    return (id, first_name, last_name, tier, number(points), number(ltv))


# ---------------------------------------------------------------------------------------------
# The service


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <key>` with every call."""

    def __init__(self, key):
        self.header = ("authorization", f"Bearer {key}")

    def _details(self, d):
        metadata = list(d.metadata or []) + [self.header]
        return _CallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class Service:
    def __init__(self, users, work, log, binary=BIN, fake_args=(), data_name=None):
        self.users = users
        self.fake_port, self.grpc_port, self.http_port = free_port(), free_port(), free_port()
        self.data = work / (data_name or "service-" + Path(binary).name)
        self.fake = spawn(
            [binary, "fake-clerk", "--users", str(users), "--addr", f"127.0.0.1:{self.fake_port}", *fake_args],
            stdout=log, stderr=log,
        )
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.fake_port)).close() or True,
                   60 + users // 20_000, "the fake Clerk")
        # Served as in production: callers authenticate with an API key (a SHA-256 per call).
        self.api_key = "cki_bench_" + base64.urlsafe_b64encode(os.urandom(20)).decode().rstrip("=")
        key_line = f"bench public,private,unsafe sha256:{hashlib.sha256(self.api_key.encode()).hexdigest()}"
        env = dict(os.environ, CLERK_SECRET_KEY="sk_test_fake_clerk", CLERK_WEBHOOK_SIGNING_SECRET=SECRET,
                   CLERK_INDEX_API_KEYS=key_line, RUST_LOG="warn")
        self.started = time.monotonic()
        self.server = spawn(
            [binary, "serve", "--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--http-addr", f"127.0.0.1:{self.http_port}",
             "--clerk-api-url", f"http://127.0.0.1:{self.fake_port}", "--data-dir", str(self.data),
             "--clerk-rate-limit", "1000000/1s", "--log-format", "json"],
            stdout=log, stderr=log, env=env,
        )

        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                return r.status == 200

        wait_until(ready, 3600, "the backfill")
        self.backfill_s = time.monotonic() - self.started
        self.fake.terminate()
        self.fake.wait()
        from clerkindex.v1 import segments_pb2_grpc, user_index_pb2, user_index_pb2_grpc  # noqa: F401

        self.pb = user_index_pb2
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        authed = grpc.intercept_channel(self.channel, BearerToken(self.api_key))
        self.stub = user_index_pb2_grpc.UserIndexStub(authed)

    def spec(self, text):
        return self.pb.FilterSpec(expression=text) if text is not None else None

    def answer(self, q):
        pb = self.pb
        if q["kind"] == "count":
            return self.stub.CountUsers(pb.CountUsersRequest(filter=self.spec(q["filter"]))).count
        if q["kind"] == "facet":
            response = self.stub.FacetUsers(pb.FacetUsersRequest(
                filter=self.spec(q["filter"]),
                facets=[pb.FacetRequest(path=q["facet"], terms=pb.TermsFacet(size=100))]))
            return {b.value.string: b.count for b in response.facets[0].terms.buckets}
        if q["kind"] == "ids":
            ids = []
            request = pb.ExportUsersRequest(filter=self.spec(q["filter"]), ids_only=True, chunk_size=5000)
            for chunk in self.stub.ExportUsers(request):
                ids.extend(chunk.ids)
            return ids
        if q["kind"] == "rows":
            rows = []
            request = pb.ExportUsersRequest(filter=self.spec(q["filter"]), fields=q["fields"], chunk_size=5000)
            for chunk in self.stub.ExportUsers(request):
                for user in chunk.users:
                    u = json.loads(user.json)
                    public, private = u.get("public_metadata") or {}, u.get("private_metadata") or {}
                    points = public.get("points")
                    rows.append(row_of(u["id"], u.get("first_name"), u.get("last_name"),
                                       public.get("membership_tier") if isinstance(public.get("membership_tier"), str) else None,
                                       points if isinstance(points, (int, float)) and not isinstance(points, bool) else None,
                                       private.get("ltv")))
            return rows
        response = self.stub.SearchUsers(pb.SearchUsersRequest(
            filter=self.spec(q["filter"]), sort=pb.SortSpec(path=q["sort"], descending=True),
            page_size=50, fields=["id"]))
        return [u.id for u in response.users]

    def cpu_s(self):
        """CPU seconds the server process has used (user and system)."""
        fields = Path(f"/proc/{self.server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def segments(self):
        """Segments the index searches (its `clerk_index_index_segments` gauge)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("clerk_index_index_segments "):
                    return int(float(line.split()[1]))
        return None

    def stop(self):
        self.peak_rss_kib = rss_kib(self.server.pid, "VmHWM")
        self.rss_kib = rss_kib(self.server.pid, "VmRSS")
        # Pages of the memory-mapped index count in RSS but are the page cache's to reclaim.
        self.rss_anon_kib = rss_kib(self.server.pid, "RssAnon")
        self.rss_file_kib = rss_kib(self.server.pid, "RssFile")
        self.channel.close()
        self.server.terminate()
        self.server.wait(timeout=60)
        self.index_bytes = dir_bytes(self.data / "index")


# ---------------------------------------------------------------------------------------------
# PostgreSQL 15


def copy_jsonl(conn, table, path):
    """Loads a JSON-lines file into a new unlogged table `table (doc jsonb)`."""
    conn.execute(f"CREATE UNLOGGED TABLE {table} (doc jsonb)")
    with conn.cursor().copy(f"COPY {table} (doc) FROM STDIN WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')") as copy:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)


def prewarm(conn, table):
    for (name,) in conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass", (table,)).fetchall():
        conn.execute("SELECT pg_prewarm(%s)", (name,))
    conn.execute("SELECT pg_prewarm(%s)", (table,))


# The users table's rows from a table `raw (doc jsonb)` of Clerk users.
PG_ROWS = """SELECT
    doc ->> 'id' AS id,
    doc ->> 'first_name' AS first_name,
    doc ->> 'last_name' AS last_name,
    (SELECT lower(e ->> 'email_address') FROM jsonb_array_elements(doc -> 'email_addresses') e
      WHERE e ->> 'id' = doc ->> 'primary_email_address_id') AS primary_email,
    to_timestamp((doc ->> 'created_at')::bigint / 1000.0) AS created_at,
    to_timestamp((doc ->> 'last_sign_in_at')::bigint / 1000.0) AS last_sign_in_at,
    (doc ->> 'banned')::boolean AS banned,
    doc -> 'public_metadata' AS public_metadata,
    doc -> 'private_metadata' AS private_metadata,
    doc -> 'unsafe_metadata' AS unsafe_metadata
FROM raw"""


class Postgres:
    def __init__(self, users_file, work, log):
        self.dir = work / "pg"
        self.dir.mkdir()
        self.port = free_port()
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_postgres:
            shutil.chown(self.dir, "postgres")
            os.chmod(work, 0o755)
        subprocess.run(as_postgres + [PG_BIN / "initdb", "-D", self.dir / "data", "-U", "bench", "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=log, stderr=log)
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        self.server = spawn(
            as_postgres + [PG_BIN / "postgres", "-D", self.dir / "data", "-p", str(self.port), "-k", self.dir,
                           "-c", "listen_addresses=127.0.0.1", "-c", f"shared_buffers={int(memory_gib / 4)}GB",
                           "-c", f"effective_cache_size={int(memory_gib / 2)}GB", "-c", "work_mem=256MB",
                           "-c", "maintenance_work_mem=2GB", "-c", "max_parallel_workers_per_gather=2",
                           "-c", "random_page_cost=1.1", "-c", "jit=off", "-c", "synchronous_commit=off"],
            stdout=log, stderr=log)
        self.dsn = f"host=127.0.0.1 port={self.port} user=bench dbname=postgres"
        wait_until(lambda: psycopg.connect(self.dsn).close() or True, 60, "PostgreSQL")
        started = time.monotonic()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            copy_jsonl(conn, "raw", users_file)
            conn.execute("""
                CREATE FUNCTION points(m jsonb) RETURNS bigint IMMUTABLE PARALLEL SAFE LANGUAGE sql
                RETURN CASE WHEN jsonb_typeof(m -> 'points') = 'number' THEN (m ->> 'points')::numeric::bigint END""")
            conn.execute(f"CREATE TABLE users AS {PG_ROWS}")
            conn.execute("DROP TABLE raw")
            for ddl in [
                "ALTER TABLE users ADD PRIMARY KEY (id)",
                "CREATE INDEX ON users USING gin (public_metadata jsonb_path_ops)",
                # In the order the top-50 query sorts, so PostgreSQL can walk it (an ascending
                # index cannot serve DESC NULLS LAST); range predicates on points use it too.
                "CREATE INDEX ON users (points(public_metadata) DESC NULLS LAST, id)",
                "CREATE INDEX ON users (created_at)",
                "CREATE INDEX ON users (last_sign_in_at)",
                "CREATE INDEX ON users (primary_email text_pattern_ops)",
                "VACUUM ANALYZE users",
                "CREATE EXTENSION IF NOT EXISTS pg_prewarm",
            ]:
                conn.execute(ddl)
            prewarm(conn, "users")
            self.size = conn.execute("SELECT pg_total_relation_size('users')").fetchone()[0]
        self.load_s = time.monotonic() - started
        self.conn = psycopg.connect(self.dsn, autocommit=True)

    def answer(self, q):
        return normalize(q["kind"], self.conn.execute(q["pg"]).fetchall())

    def apply(self, updated_file, deleted_ids):
        """The steady-state changes: updated users replace their rows, deleted ones go; then
        what autovacuum would do in time."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            copy_jsonl(conn, "raw", updated_file)
            conn.execute("DELETE FROM users WHERE id IN (SELECT doc ->> 'id' FROM raw)")
            conn.execute(f"INSERT INTO users {PG_ROWS}")
            conn.execute("DROP TABLE raw")
            conn.execute("DELETE FROM users WHERE id = ANY(%s)", (deleted_ids,))
            conn.execute("VACUUM ANALYZE users")
            prewarm(conn, "users")

    def stop(self):
        self.conn.close()
        self.server.terminate()
        self.server.wait(timeout=60)


# ---------------------------------------------------------------------------------------------
# DuckDB


# The users table's rows from a table `raw` of Clerk users, the metadata flattened into columns.
DUCK_ROWS = """SELECT
  id,
  first_name,
  last_name,
  lower(list_filter(json_transform(email_addresses, '[{"id": "VARCHAR", "email_address": "VARCHAR"}]'),
                    e -> e.id = primary_email_address_id)[1].email_address) AS primary_email,
  make_timestamp(created_at * 1000) AS created_at,
  make_timestamp(last_sign_in_at * 1000) AS last_sign_in_at,
  banned,
  CASE WHEN json_type(public_metadata, '$.plan_type') = 'VARCHAR' THEN public_metadata ->> '$.plan_type' END AS plan_type,
  CASE WHEN json_type(public_metadata, '$.membership_tier') = 'VARCHAR' THEN public_metadata ->> '$.membership_tier' END AS membership_tier,
  CASE WHEN json_type(public_metadata, '$.points') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(public_metadata ->> '$.points' AS DOUBLE)::BIGINT END AS points,
  CASE WHEN json_type(public_metadata, '$.favorite_genre') = 'ARRAY' THEN CAST(public_metadata -> '$.favorite_genre' AS VARCHAR[]) END AS favorite_genre,
  CASE WHEN json_type(public_metadata, '$.beta_cohort') NOT IN ('NULL') THEN public_metadata -> '$.beta_cohort' END AS beta_cohort,
  CASE WHEN json_type(public_metadata, '$.user_preferences.theme') = 'VARCHAR' THEN public_metadata ->> '$.user_preferences.theme' END AS theme,
  CASE WHEN json_type(private_metadata, '$.ltv') IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN CAST(private_metadata ->> '$.ltv' AS DOUBLE) END AS ltv
FROM raw"""


class DuckDB:
    def __init__(self, users_file, work, memory_limit=None):
        started = time.monotonic()
        self.path = work / "bench.duckdb"
        self.conn = duckdb.connect(str(self.path))
        if memory_limit:
            self.conn.execute(f"SET memory_limit = '{memory_limit}'")
        self.read_raw(users_file)
        self.conn.execute(f"CREATE TABLE users AS {DUCK_ROWS}")
        self.conn.execute("DROP TABLE raw")
        self.conn.execute("CHECKPOINT")
        self.load_s = time.monotonic() - started
        self.size = self.path.stat().st_size

    def read_raw(self, users_file):
        self.conn.execute(f"""
            CREATE TABLE raw AS SELECT * FROM read_json('{users_file}', format = 'newline_delimited',
              columns = {{id: 'VARCHAR', first_name: 'VARCHAR', last_name: 'VARCHAR', email_addresses: 'JSON', primary_email_address_id: 'VARCHAR',
                          created_at: 'BIGINT', last_sign_in_at: 'BIGINT', banned: 'BOOLEAN',
                          public_metadata: 'JSON', private_metadata: 'JSON', unsafe_metadata: 'JSON'}})""")

    def apply(self, updated_file, deleted_ids):
        """The steady-state changes: updated users replace their rows, deleted ones go."""
        self.read_raw(updated_file)
        self.conn.execute("DELETE FROM users WHERE id IN (SELECT id FROM raw)")
        self.conn.execute(f"INSERT INTO users {DUCK_ROWS}")
        self.conn.execute("DROP TABLE raw")
        self.conn.execute("DELETE FROM users WHERE list_contains(?, id)", [deleted_ids])
        self.conn.execute("CHECKPOINT")

    def answer(self, q):
        return normalize(q["kind"], self.conn.execute(q["duck"]).fetchall())

    def stop(self):
        self.conn.close()


# ---------------------------------------------------------------------------------------------


def timed(answer, q, warmup, runs):
    for _ in range(warmup):
        answer(q)
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = answer(q)
        times.append((time.perf_counter() - started) * 1000)
    return result, statistics.median(times), percentile(times, 95)


def comparable(kind, result):
    return sorted(result) if kind in ("ids", "rows") else result


def compare_engines(queries, service, duck, pg, args):
    """Times every query on the three engines and checks their answers equal and non-empty;
    returns `(query, {engine: (median, p95)}, answer size)` per query."""
    rows = []
    width = max(len(q["name"]) for q in queries)
    for q in queries:
        answers, timings = {}, {}
        engines = [("service", service.answer), ("duckdb", duck.answer)] + ([("postgres", pg.answer)] if pg else [])
        for engine, answer in engines:
            result, median, p95 = timed(answer, q, args.warmup, args.runs)
            answers[engine] = comparable(q["kind"], result)
            timings[engine] = (median, p95)
        if any(answer != answers["service"] for answer in answers.values()):
            raise SystemExit(f"answers differ for {q['name']!r}: " + json.dumps({k: str(v)[:300] for k, v in answers.items()}))
        size = answers["service"] if q["kind"] == "count" else len(answers["service"])
        if size == 0:
            raise SystemExit(f"{q['name']!r} matches nobody: an empty answer proves nothing; change the query")
        rows.append((q, timings, size))
        print(f"   {q['name']:<{width}} " + "  ".join(f"{e} {t[0]:8.2f} ms" for e, t in timings.items())
              + f"  (answer size {size})", flush=True)
    return rows


def svix_headers(msg_id, body):
    ts = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"svix-id": msg_id, "svix-timestamp": ts, "svix-signature": f"v1,{signature}", "content-type": "application/json"}


def webhook_latency(service, sample_users, count, rate):
    """Sends `count` user.updated webhooks at `rate`/s; each is timed from send to searchable."""
    latencies = []
    for i, user in enumerate(sample_users[:count]):
        user = dict(user)
        user["public_metadata"] = dict(user.get("public_metadata") or {}, bench_tag=f"t{i}")
        user["updated_at"] = int(time.time() * 1000) + i
        body = json.dumps({"type": "user.updated", "object": "event", "data": user, "timestamp": user["updated_at"]}).encode()
        started = time.perf_counter()
        request = urllib.request.Request(f"http://127.0.0.1:{service.http_port}/webhooks/clerk", data=body,
                                         headers=svix_headers(f"msg_bench_{i}", body), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status
        query = dict(kind="count", filter=f'public.bench_tag = "t{i}"')
        while service.answer(query) != 1:
            time.sleep(0.0005)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(max(0.0, 1 / rate - latencies[-1] / 1000))
    return statistics.median(latencies), percentile(latencies, 99)


PLANS = ["free", "pro", "team", "enterprise"]


def post_webhook(service, msg_id, event):
    body = json.dumps(event).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{service.http_port}/webhooks/clerk", data=body,
                                     headers=svix_headers(msg_id, body), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status


def steady_changes(users_file, work):
    """A month of webhooks in one go: every 10th user updated (points and plan moved, and a
    `steady` marker), every 100th deleted. Returns the updated users' file and the deleted ids."""
    updated_file = work / "updated.jsonl"
    deleted = []
    now = int(time.time() * 1000)
    with open(users_file) as f, open(updated_file, "w") as out:
        for i, line in enumerate(f):
            if i % 100 == 7:
                deleted.append(json.loads(line)["id"])
            elif i % 10 == 3:
                user = json.loads(line)
                meta = dict(user.get("public_metadata") or {})
                meta["points"] = (i * 7919) % 10_000
                if meta.get("plan_type") in PLANS:
                    meta["plan_type"] = PLANS[(PLANS.index(meta["plan_type"]) + 1) % len(PLANS)]
                meta["steady"] = 1
                user["public_metadata"] = meta
                user["updated_at"] = max(int(user.get("updated_at") or 0) + 1, now)
                out.write(json.dumps(user) + "\n")
    return updated_file, deleted


def apply_steady(service, users, updated_file, deleted, threads=64):
    """Sends the changes as signed webhooks, 64 at a time (each is acknowledged once durable, so
    concurrent ones share commits), and waits until the index holds them all
    and its commits have settled (merges included)."""
    def update(item):
        i, line = item
        user = json.loads(line)
        post_webhook(service, f"msg_steady_u{i}", {"type": "user.updated", "object": "event", "data": user,
                                                    "timestamp": user["updated_at"]})

    def delete(item):
        i, user_id = item
        post_webhook(service, f"msg_steady_d{i}", {"type": "user.deleted", "object": "event",
                                                    "data": {"deleted": True, "id": user_id, "object": "user"},
                                                    "timestamp": int(time.time() * 1000)})

    started = time.monotonic()
    with open(updated_file) as f, concurrent.futures.ThreadPoolExecutor(threads) as pool:
        updated = len(list(pool.map(update, enumerate(f))))
        list(pool.map(delete, enumerate(deleted)))
    sent_s = time.monotonic() - started
    marker = dict(kind="count", filter="public.steady = 1")
    wait_until(lambda: service.answer(marker) == updated and service.answer(dict(kind="count", filter=None))
               == users - len(deleted), 600, "the steady-state changes")

    def commits():
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("clerk_index_commits_total"))

    last, quiet_since = commits(), time.monotonic()
    while time.monotonic() - quiet_since < 10 and time.monotonic() - started < 900:
        time.sleep(1)
        now = commits()
        if now != last:
            last, quiet_since = now, time.monotonic()
    return updated, sent_s


def throughput(service, q, threads, seconds):
    deadline = time.monotonic() + seconds

    def worker():
        done = 0
        while time.monotonic() < deadline:
            service.answer(q)
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: worker(), range(threads)))
    return total / seconds


def compiled_mix(queries):
    """The query mix in `clerk-index bench`'s form."""
    mix = []
    for q in queries:
        entry = {"name": q["name"], "filter": q["filter"]}
        if q["kind"] == "count":
            entry["kind"] = "count"
        elif q["kind"] == "facet":
            entry.update(kind="facet", terms=q["facet"])
        elif q["kind"] == "ids":
            entry.update(kind="export", ids_only=True)
        elif q["kind"] == "rows":
            entry.update(kind="export", fields=q["fields"])
        else:
            entry.update(kind="search", sort="-" + q["sort"], page_size=50)
        mix.append(entry)
    return mix


def compiled_client(service, queries, work, concurrency, connections, seconds, name):
    """`clerk-index bench` (the compiled load client) against the service: latency percentiles per
    query, the server's own time per method from its metrics, and the CPU both used."""
    mix = work / f"{name}.json"
    mix.write_text(json.dumps(compiled_mix(queries)))
    output = subprocess.run(
        [BIN, "bench", "--server", f"http://127.0.0.1:{service.grpc_port}", "--api-key", service.api_key,
         "--mix", mix, "--concurrency", str(concurrency), "--connections", str(connections),
         "--duration", str(seconds), "--warmup", "1",
         "--metrics", f"http://127.0.0.1:{service.http_port}/metrics", "-o", "json"],
        check=True, capture_output=True, text=True)
    result = json.loads(output.stdout)
    for q in result["queries"]:
        if q["errors"]:
            raise SystemExit(f"clerk-index bench: {q['name']!r} failed: {q['first_error']}")
    return result


def bench_size(users, args, work, log):
    print(f"== {users:,} users", flush=True)
    users_file = work / "users.jsonl"
    subprocess.run([BIN, "generate", "--users", str(users), "-o", users_file], check=True)
    service = Service(users, work, log)
    print(f"   service backfill {service.backfill_s:.1f} s", flush=True)
    pg = Postgres(users_file, work, log)
    print(f"   postgres load {pg.load_s:.1f} s", flush=True)
    duck = DuckDB(users_file, work)
    print(f"   duckdb load {duck.load_s:.1f} s", flush=True)
    rows = compare_engines(QUERIES, service, duck, pg, args)
    sample = []
    with open(users_file) as f:
        for line in f:
            sample.append(json.loads(line))
            if len(sample) >= args.webhooks:
                break
    webhook_p50, webhook_p99 = webhook_latency(service, sample, args.webhooks, args.webhook_rate)
    qps = throughput(service, QUERIES[1], args.threads, args.seconds)
    # The compiled client: one caller for latency, then the counts from 8 callers for throughput.
    latency = compiled_client(service, QUERIES, work, 1, 1, args.compiled_seconds, "latency")
    saturated = compiled_client(service, [QUERIES[1]], work, args.threads, 2, args.seconds, "throughput")
    # Steady state: the same questions after 10% updates and 1% deletes (merges settled).
    updated_file, deleted = steady_changes(users_file, work)
    updated, sent_s = apply_steady(service, users, updated_file, deleted)
    pg.apply(str(updated_file), deleted)
    duck.apply(str(updated_file), deleted)
    print(f"   steady state: {updated:,} updates and {len(deleted):,} deletes sent in {sent_s:.1f} s", flush=True)
    steady_rows = compare_engines(QUERIES, service, duck, pg, args)
    steady_latency = compiled_client(service, QUERIES, work, 1, 1, args.compiled_seconds, "steady")
    service.stop()
    pg.stop()
    duck.stop()
    return dict(users=users, service=service, pg=pg, duck=duck, rows=rows,
                webhook=(webhook_p50, webhook_p99), qps=qps,
                compiled={q["name"]: q for q in latency["queries"]}, saturated=saturated,
                steady=dict(updated=updated, deleted=len(deleted), sent_s=sent_s, rows=steady_rows,
                            compiled={q["name"]: q for q in steady_latency["queries"]}))


def bench_large(users, args, work, log):
    """The mix at a size where PostgreSQL and a steady state are left out (10M users): the
    service backfilled from the fake Clerk (which generates each page from its seed), DuckDB
    side by side, the compiled client's latencies and throughput."""
    print(f"== {users:,} users (large: DuckDB only, no steady state)", flush=True)
    users_file = work / "users.jsonl"
    started = time.monotonic()
    subprocess.run([BIN, "generate", "--users", str(users), "-o", users_file], check=True)
    print(f"   generated {users_file.stat().st_size / 2**30:.1f} GiB of users in {time.monotonic() - started:.0f} s", flush=True)
    service = Service(users, work, log)
    print(f"   service backfill {service.backfill_s:.1f} s", flush=True)
    # DuckDB may take half the machine's memory while the service holds its index beside it.
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    duck = DuckDB(users_file, work, memory_limit=f"{int(memory_gib / 2)}GB")
    print(f"   duckdb load {duck.load_s:.1f} s", flush=True)
    users_file.unlink()
    rows = compare_engines(QUERIES, service, duck, None, args)
    latency = compiled_client(service, QUERIES, work, 1, 1, args.compiled_seconds, "latency")
    saturated = compiled_client(service, [QUERIES[1]], work, args.threads, 2, args.seconds, "throughput")
    service.stop()
    duck.stop()
    return dict(users=users, service=service, duck=duck, rows=rows, saturated=saturated,
                compiled={q["name"]: q for q in latency["queries"]})


def large_report(results, args):
    lines = ["# Benchmark results past a million users", "",
             f"Machine: {machine()}.", "",
             f"Produced by `bench/run --large --sizes {','.join(str(r['users']) for r in results)} --runs {args.runs} "
             f"--warmup {args.warmup}` on {time.strftime('%Y-%m-%d')}. The service backfilled from the fake Clerk, which "
             "generates every page from its seed on the same two cores (it keeps 48 bytes per user, not the "
             "users' JSON). DuckDB in-process on the same users (its memory limit: half the machine's), "
             "PostgreSQL and the steady state left out at this size. Medians (and p95) in milliseconds; every "
             "answer was checked equal between the service and DuckDB.", ""]
    for r in results:
        s, duck = r["service"], r["duck"]
        lines += [f"## {r['users']:,} users", "",
                  "| | clerk-index | DuckDB |", "|---|---|---|",
                  f"| load | backfill from the fake Clerk over HTTP: {s.backfill_s:.0f} s ({r['users'] / s.backfill_s:,.0f} users/s) "
                  f"| read_json + flatten: {duck.load_s:.0f} s |",
                  f"| size on disk | {mib(s.index_bytes)} (index incl. stored users) | {mib(duck.size)} |",
                  f"| memory | peak RSS {s.peak_rss_kib / 1024:,.0f} MiB (backfill included), {s.rss_kib / 1024:,.0f} MiB after the queries "
                  f"({s.rss_anon_kib / 1024:,.0f} MiB anonymous, {s.rss_file_kib / 1024:,.0f} MiB of mapped index files) | |",
                  "",
                  "| query | answer | clerk-index (Python) | compiled client p50 (p99) | DuckDB | compiled/DuckDB |",
                  "|---|---|---|---|---|---|"]
        for q, t, size in r["rows"]:
            sv, dk, compiled = t["service"], t["duckdb"], r["compiled"][q["name"]]
            lines.append(f"| {q['name']} | {size:,} | {sv[0]:.2f} ({sv[1]:.2f}) | {compiled['p50_ms']:.2f} "
                         f"({compiled['p99_ms']:.2f}) | {dk[0]:.2f} ({dk[1]:.2f}) | {compiled['p50_ms'] / dk[0]:.2f} |")
        saturated = r["saturated"]
        lines += ["", f"Concurrent counts (`{QUERIES[1]['filter']}`, compiled client, {args.threads} callers over 2 "
                  f"connections, {args.seconds} s): {saturated['per_second']:,.0f} queries/s.", ""]
        t = {q["name"]: (times, size) for q, times, size in r["rows"]}
        slower = [n for n, (times, _) in t.items() if r["compiled"][n]["p50_ms"] > times["duckdb"][0]]
        counts = [n for n in t if not n.startswith("export")]
        slow_counts = [n for n in counts if r["compiled"][n]["p50_ms"] > 10]
        checks = [
            ("every count, facet and top-50 <= 10 ms (compiled p50)", not slow_counts,
             ", ".join(f"{n} {r['compiled'][n]['p50_ms']:.1f} ms" for n in slow_counts) or "all"),
            ("serving RSS <= 4 GB", s.rss_kib <= 4 * 2**20,
             f"{s.rss_kib / 1024:,.0f} MiB (peak during backfill {s.peak_rss_kib / 1024:,.0f} MiB)"),
            ("index <= 7 GB", s.index_bytes <= 7 * 2**30, mib(s.index_bytes)),
            ("every query faster than DuckDB (compiled p50 against DuckDB's median)", not slower,
             ", ".join(f"{n} {r['compiled'][n]['p50_ms']:.1f} vs {t[n][0]['duckdb'][0]:.1f}" for n in slower) or "all"),
        ]
        lines += [f"### Targets at {r['users']:,} users", "", "| target | met | measured |", "|---|---|---|"]
        lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in checks]
        lines.append("")
    return "\n".join(lines) + "\n"


def compare_size(users, args, work, log):
    """The query mix on the baseline binary and on this tree's, in one run: both serve the same
    population, each query is timed on one then the other, alternating, and their answers must
    be equal."""
    print(f"== {users:,} users: baseline {args.baseline_ref} vs this tree", flush=True)
    baseline = Service(users, work, log, binary=args.baseline_bin)
    print(f"   baseline backfill {baseline.backfill_s:.1f} s", flush=True)
    current = Service(users, work, log)
    print(f"   this tree's backfill {current.backfill_s:.1f} s", flush=True)
    rows = []
    for q in QUERIES:
        timings = {"baseline": [], "current": []}
        answers = {}
        for _ in range(args.warmup):
            baseline.answer(q)
            current.answer(q)
        # Alternate single runs, so drift of the machine's speed hits both alike.
        for _ in range(args.runs):
            for name, service in (("baseline", baseline), ("current", current)):
                started = time.perf_counter()
                answers[name] = comparable(q["kind"], service.answer(q))
                timings[name].append((time.perf_counter() - started) * 1000)
        if answers["baseline"] != answers["current"]:
            raise SystemExit(f"answers differ for {q['name']!r} between the baseline and this tree")
        before, after = (statistics.median(timings[n]) for n in ("baseline", "current"))
        rows.append((q["name"], before, after))
        print(f"   {q['name']:<32} baseline {before:8.2f} ms  this tree {after:8.2f} ms  ratio {after / before:.2f}",
              flush=True)
    baseline.stop()
    current.stop()
    return dict(users=users, rows=rows, backfill=(baseline.backfill_s, current.backfill_s),
                sizes=(baseline.index_bytes, current.index_bytes),
                pairs=backfill_pairs(users, args, work, log))


def backfill_pairs(users, args, work, log):
    """`--backfill-pairs N`: N more backfills of each binary, one process at a time, alternating
    which goes first, each into an empty data directory: the load time moves with the machine's
    speed more than most changes move it, so only pairs taken side by side compare."""
    pairs = []
    for i in range(args.backfill_pairs):
        order = [("baseline", args.baseline_bin), ("current", BIN)]
        if i % 2:
            order.reverse()
        pair = {}
        for name, binary in order:
            service = Service(users, work, log, binary=binary, data_name=f"pair-{i}-{name}")
            pair[name] = (service.backfill_s, service.cpu_s(), service.segments())
            service.stop()
            shutil.rmtree(service.data, ignore_errors=True)
        (b_s, b_cpu, b_seg), (c_s, c_cpu, c_seg) = pair["baseline"], pair["current"]
        print(f"   backfill pair {i + 1}: baseline {b_s:.1f} s ({b_cpu:.0f} s CPU, {segments(b_seg)}), "
              f"this tree {c_s:.1f} s ({c_cpu:.0f} s CPU, {segments(c_seg)})", flush=True)
        pairs.append(pair)
    return pairs


def segments(count):
    # Binaries before the `clerk_index_index_segments` gauge do not report it.
    return f"{count} segments" if count is not None else "segments not reported"


def compare_report(results, args):
    geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))  # noqa: E731
    lines = ["# Before and after", "",
             f"Machine: {os.cpu_count()} vCPU, {platform.system()} {platform.release()}.", "",
             f"Produced by `bench/run --baseline {args.baseline_ref} --sizes {','.join(str(r['users']) for r in results)} "
             f"--runs {args.runs}` on {time.strftime('%Y-%m-%d')}: the query mix of `bench/run` on the release binary "
             f"of `{args.baseline_ref}` and on this tree's, both serving the same generated users at once, each "
             f"query timed {args.runs} times on one then the other, alternating, after {args.warmup} warm-up runs "
             "(medians, milliseconds, over real gRPC from Python). Answers were checked equal.", ""]
    for r in results:
        lines += [f"## {r['users']:,} users", "",
                  "| query | baseline | this tree | this tree / baseline |", "|---|---|---|---|"]
        ratios = []
        for name, before, after in r["rows"]:
            ratios.append(after / before)
            lines.append(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
        mean = geo(ratios)
        verdict = "within ±10%" if 0.9 <= mean <= 1.1 else "**outside ±10%**"
        (b_fill, c_fill), (b_size, c_size) = r["backfill"], r["sizes"]
        lines += [f"| **geometric mean** | | | **{mean:.3f}** ({verdict}) |", "",
                  f"Backfill: baseline {b_fill:.1f} s, this tree {c_fill:.1f} s. Index on disk: baseline "
                  f"{mib(b_size)}, this tree {mib(c_size)}.", ""]
        if r["pairs"]:
            lines += [f"Backfill pairs (`--backfill-pairs {len(r['pairs'])}`: one process at a time, alternating "
                      "which goes first; seconds to ready, the server's CPU seconds, segments searched at the end):", "",
                      "| pair | baseline | this tree | this tree / baseline |", "|---|---|---|---|"]
            for i, pair in enumerate(r["pairs"], 1):
                (b_s, b_cpu, b_seg), (c_s, c_cpu, c_seg) = pair["baseline"], pair["current"]
                lines.append(f"| {i} | {b_s:.1f} s, {b_cpu:.0f} s CPU, {segments(b_seg)} | "
                             f"{c_s:.1f} s, {c_cpu:.0f} s CPU, {segments(c_seg)} | {c_s / b_s:.2f} |")
            lines += [f"| **geometric mean** | | | **{geo([p['current'][0] / p['baseline'][0] for p in r['pairs']]):.3f}** |", ""]
    return "\n".join(lines) + "\n"


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg_version = subprocess.run([PG_BIN / "postgres", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} vCPU ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
            f"{pg_version}; DuckDB {duckdb.__version__}")


def report(results, args):
    lines = ["# Benchmark results", "",
             f"Machine: {machine()}.", "",
             f"Produced by `bench/run --sizes {','.join(str(r['users']) for r in results)} --runs {args.runs}` on "
             f"{time.strftime('%Y-%m-%d')}. Medians (and p95) of {args.runs} runs after {args.warmup} warm-up runs, "
             "milliseconds, measured from a separate client process: the service over real gRPC (Python grpcio "
             "client), PostgreSQL over a loopback TCP connection (psycopg), DuckDB in-process (no network: the "
             "most favourable setting for it). Every answer was checked equal across the three engines.", ""]
    for r in results:
        s, pg, duck = r["service"], r["pg"], r["duck"]
        lines += [f"## {r['users']:,} users", "",
                  "| | clerk-index | PostgreSQL 15 | DuckDB |", "|---|---|---|---|",
                  f"| load | backfill from the fake Clerk over HTTP: {s.backfill_s:.1f} s ({r['users'] / s.backfill_s:,.0f} users/s) "
                  f"| COPY + build + indexes + prewarm: {pg.load_s:.1f} s | read_json + flatten: {duck.load_s:.1f} s |",
                  f"| size on disk | {mib(s.index_bytes)} (index incl. stored users) | {mib(pg.size)} (table + indexes) | {mib(duck.size)} |",
                  f"| memory | peak RSS {s.peak_rss_kib / 1024:,.0f} MiB (backfill included), {s.rss_kib / 1024:,.0f} MiB after the queries | | |",
                  "",
                  "| query | answer | clerk-index | compiled client | DuckDB | PostgreSQL | service/DuckDB | service/PostgreSQL |",
                  "|---|---|---|---|---|---|---|---|"]
        duck_ratios, pg_ratios = [], []
        for q, t, size in r["rows"]:
            sv, dk, pq = t["service"], t["duckdb"], t["postgres"]
            compiled = r["compiled"][q["name"]]
            duck_ratios.append(sv[0] / dk[0])
            pg_ratios.append(sv[0] / pq[0])
            lines.append(f"| {q['name']} | {size:,} | {sv[0]:.2f} ({sv[1]:.2f}) | {compiled['p50_ms']:.2f} ({compiled['p99_ms']:.2f}) | "
                         f"{dk[0]:.2f} ({dk[1]:.2f}) | {pq[0]:.2f} ({pq[1]:.2f}) | {sv[0] / dk[0]:.2f} | {sv[0] / pq[0]:.3f} |")
        geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))  # noqa: E731
        saturated = r["saturated"]
        cores = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines += [f"| **geometric mean of ratios** | | | | | | **{geo(duck_ratios):.2f}** | **{geo(pg_ratios):.3f}** |", "",
                  "A ratio below 1 means clerk-index was faster (ratios from the Python client's times). The "
                  "compiled client column is `clerk-index bench` with one caller: p50 (p99) over "
                  f"{args.compiled_seconds} s of calls in turn, so the client's own cost is in microseconds.", "",
                  f"Webhook to searchable (signed `user.updated` at {args.webhook_rate}/s, acknowledged durably, then "
                  f"visible to CountUsers): p50 {r['webhook'][0]:.1f} ms, p99 {r['webhook'][1]:.1f} ms over {args.webhooks} webhooks.", "",
                  f"Concurrent counts (`{QUERIES[1]['filter']}`, {args.threads} client threads, {args.seconds} s): "
                  f"{r['qps']:,.0f} queries/s from Python; {saturated['per_second']:,.0f} queries/s from the compiled "
                  f"client ({args.threads} callers over 2 connections; p50 {saturated['queries'][0]['p50_ms']:.2f} ms, "
                  f"p99 {saturated['queries'][0]['p99_ms']:.2f} ms; CPU cores used: server "
                  f"{cores(saturated['server_cpu_cores'])}, client {cores(saturated['client_cpu_cores'])}, on "
                  f"{os.cpu_count()} shared).", ""]
        lines += steady_table(r)
    lines += targets(results[-1])
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def steady_ratio(r):
    names = [q["name"] for q, _, _ in r["rows"]]
    ratios = [r["steady"]["compiled"][n]["p50_ms"] / r["compiled"][n]["p50_ms"] for n in names]
    return math.exp(sum(math.log(x) for x in ratios) / len(ratios))


def steady_table(r):
    """The mix after a month of webhooks beside the fresh index's times."""
    st = r["steady"]
    fresh = {q["name"]: t for q, t, _ in r["rows"]}
    lines = [f"### Steady state: after {st['updated']:,} updates and {st['deleted']:,} deletes", "",
             f"Sent as signed webhooks (64 at a time, {st['sent_s']:.0f} s), applied alike to PostgreSQL (then "
             "`VACUUM ANALYZE`) and DuckDB, answers checked equal again; the index's commits and merges had "
             "settled. Medians in ms; compiled = `clerk-index bench`, one caller.", "",
             "| query | answer | clerk-index | compiled client | steady / fresh (compiled) | DuckDB | PostgreSQL |",
             "|---|---|---|---|---|---|---|"]
    for q, t, size in st["rows"]:
        now, before = st["compiled"][q["name"]]["p50_ms"], r["compiled"][q["name"]]["p50_ms"]
        lines.append(f"| {q['name']} | {size:,} | {t['service'][0]:.2f} (fresh {fresh[q['name']]['service'][0]:.2f}) | "
                     f"{now:.2f} | {now / before:.2f} | {t['duckdb'][0]:.2f} | {t['postgres'][0]:.2f} |")
    return lines + [""]


def targets(r):
    """The issue's targets, checked against the largest size of this run."""
    s = r["service"]
    t = {q["name"]: (times, size) for q, times, size in r["rows"]}
    med = lambda name, engine="service": t[name][0][engine][0]  # noqa: E731
    ratio = lambda engine: math.exp(sum(math.log(times["service"][0] / times[engine][0])  # noqa: E731
                                        for times, _ in t.values()) / len(t))
    rows_export = "export names and metadata of a ~11% segment"
    quick = [n for n in t if n not in ("export ids of a ~11% segment", rows_export)]
    rows = [
        ("every query at or below DuckDB's median", all(med(n) <= med(n, "duckdb") for n in t),
         ", ".join(f"{n} {med(n):.1f} vs {med(n, 'duckdb'):.1f}" for n in t if med(n) > med(n, "duckdb")) or "all"),
        ("geometric mean >= 2x faster than DuckDB", ratio("duckdb") <= 0.5, f"{1 / ratio('duckdb'):.1f}x"),
        ("geometric mean >= 20x faster than PostgreSQL", ratio("postgres") <= 0.05, f"{1 / ratio('postgres'):.1f}x"),
        ("counts, facets, conjunctions, top-50 <= 1 ms", all(med(n) <= 1.0 for n in quick),
         ", ".join(f"{n} {med(n):.1f} ms" for n in quick if med(n) > 1.0) or "all"),
        ("the same, p50 from the compiled client", all(r["compiled"][n]["p50_ms"] <= 1.0 for n in quick),
         ", ".join(f"{n} {r['compiled'][n]['p50_ms']:.2f} ms" for n in quick if r["compiled"][n]["p50_ms"] > 1.0) or "all"),
        (">= 5,000 counts/s with 8 concurrent clients (compiled)", r["saturated"]["per_second"] >= 5000,
         f"{r['saturated']['per_second']:,.0f}/s"),
        ("steady state within 1.3x of fresh (compiled p50, geometric mean)", steady_ratio(r) <= 1.3,
         f"{steady_ratio(r):.2f}x"),
        ("export of ~100k ids <= 30 ms", med("export ids of a ~11% segment") <= 30,
         f"{med('export ids of a ~11% segment'):.0f} ms"),
        ("export of ~100k users with names and three metadata fields <= 150 ms (compiled)",
         r["compiled"][rows_export]["p50_ms"] <= 150,
         f"{r['compiled'][rows_export]['p50_ms']:.0f} ms (Python client {med(rows_export):.0f} ms, "
         f"DuckDB {med(rows_export, 'duckdb'):.0f} ms)"),
        ("backfill >= 25,000 users/s", r["users"] / s.backfill_s >= 25_000, f"{r['users'] / s.backfill_s:,.0f} users/s"),
        ("index on disk <= 1 GB", s.index_bytes <= 2**30, mib(s.index_bytes)),
        ("RSS <= 1.5 GB while serving", s.rss_kib <= 1.5 * 2**20, f"{s.rss_kib / 1024:,.0f} MiB (peak during backfill {s.peak_rss_kib / 1024:,.0f} MiB)"),
        ("webhook-to-searchable p99 <= 250 ms", r["webhook"][1] <= 250, f"{r['webhook'][1]:.0f} ms"),
    ]
    lines = [f"## Targets at {r['users']:,} users", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in rows]
    return lines


def run_sizes(args, run, prefix):
    """`run(users, args, work, log)` for each of `args.sizes` in a fresh work directory, with the
    processes' output in one log (its end printed when a size fails); returns their results."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # PostgreSQL runs as its own user and must reach its directory
        (work / "stubs").mkdir()
        compile_protos(work / "stubs")
        results = []
        with open(work / "processes.log", "w") as log:
            try:
                for users in [int(s) for s in args.sizes.split(",")]:
                    size_dir = work / str(users)
                    size_dir.mkdir()
                    results.append(run(users, args, size_dir, log))
            except BaseException:
                log.flush()
                sys.stderr.write(Path(work / "processes.log").read_text()[-4000:])
                raise
            finally:
                for process in PROCESSES:
                    if process.poll() is None:
                        process.kill()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--webhook-rate", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--compiled-seconds", type=float, default=10.0,
                        help="seconds of the compiled client's single-caller latency run")
    parser.add_argument("--output", default=None)
    parser.add_argument("--baseline-bin", default=None,
                        help="compare this tree's binary with this one (bench/run --baseline REF builds it)")
    parser.add_argument("--baseline-ref", default="baseline")
    parser.add_argument("--backfill-pairs", type=int, default=0,
                        help="with --baseline-bin: this many more backfills of each binary, alternating, side by side")
    parser.add_argument("--large", action="store_true",
                        help="sizes past a million (10M): DuckDB only, no steady state; writes bench/LARGE-RESULTS.md")
    args = parser.parse_args()
    compare = args.baseline_bin is not None
    if args.output is None:
        name = "BASELINE-RESULTS.md" if compare else "LARGE-RESULTS.md" if args.large else "RESULTS.md"
        args.output = str(ROOT / "bench" / name)
    run = compare_size if compare else bench_large if args.large else bench_size
    results = run_sizes(args, run, "clerk-index-bench-")
    write = compare_report if compare else large_report if args.large else report
    Path(args.output).write_text(write(results, args))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
