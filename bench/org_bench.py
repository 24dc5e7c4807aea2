#!/usr/bin/env python3
"""Organization questions: clerk-index vs PostgreSQL 15 vs DuckDB, same users, organizations and
memberships, same run.

For each size: `clerk-index generate --organizations` writes the users (one organization per ten
users, sizes skewed: a few of thousands of members, a long tail of two or three), the fake Clerk
serves the same population and `clerk-index serve` backfills it over HTTP. PostgreSQL gets three
tables joined by id (users as in bench.py; organizations with the plan as a column; memberships
with btree indexes on (organization, role, user), (user) and (role, organization, user)), tuned and
prewarmed; DuckDB the same tables flattened. Each question is asked of all three, answers are
checked equal, and the correlated form (`org[...]`: one membership satisfies everything) is
compared with the uncorrelated one (`org.a AND org.b`: possibly two memberships). Writes
bench/ORG-RESULTS.md. Run through `bench/run --organizations`.
"""

import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import psycopg

import bench
from bench import BIN, DuckDB, Postgres, Service, copy_jsonl, mib, prewarm

DAY_MS = 86_400_000


def queries(cutoff_ms):
    """The questions, with `cutoff_ms` the start of the generated organizations' last year.
    `pair` names the uncorrelated form a correlated question is compared with."""
    members_of = """SELECT m.user_id FROM memberships m JOIN organizations o ON o.id = m.org_id"""
    return [
        dict(
            name="admins of enterprise orgs (correlated)",
            kind="count",
            filter='org[role = "org:admin" AND public.plan = "enterprise"]',
            sql=f"""SELECT count(DISTINCT m.user_id) FROM memberships m JOIN organizations o ON o.id = m.org_id
                    WHERE m.role = 'org:admin' AND o.plan = 'enterprise'""",
            pair="admin somewhere, enterprise somewhere",
        ),
        dict(
            name="admin somewhere, enterprise somewhere",
            kind="count",
            filter='org.role = "org:admin" AND org.public.plan = "enterprise"',
            sql=f"""SELECT count(*) FROM (SELECT user_id FROM memberships WHERE role = 'org:admin'
                    INTERSECT {members_of} WHERE o.plan = 'enterprise') t""",
        ),
        dict(
            name="members of free orgs (correlated)",
            kind="count",
            filter='org[role = "org:member" AND public.plan = "free"]',
            sql=f"""SELECT count(DISTINCT m.user_id) FROM memberships m JOIN organizations o ON o.id = m.org_id
                    WHERE m.role = 'org:member' AND o.plan = 'free'""",
            pair="member somewhere, free somewhere",
        ),
        dict(
            name="member somewhere, free somewhere",
            kind="count",
            filter='org.role = "org:member" AND org.public.plan = "free"',
            sql=f"""SELECT count(*) FROM (SELECT user_id FROM memberships WHERE role = 'org:member'
                    INTERSECT {members_of} WHERE o.plan = 'free') t""",
        ),
        dict(
            name="in small orgs created in the last year",
            kind="count",
            filter=f"org[created_at >= {cutoff_ms} AND members_count < 5]",
            sql=f"""SELECT count(DISTINCT m.user_id) FROM memberships m JOIN organizations o ON o.id = m.org_id
                    WHERE o.created_at >= {cutoff_ms} AND o.members_count < 5""",
        ),
        dict(
            name="not banned, admin of a paying org",
            kind="count",
            filter='banned = false AND org[role = "org:admin" AND public.plan IN ["business", "enterprise"]]',
            sql="""SELECT count(*) FROM users u WHERE NOT u.banned AND EXISTS (
                     SELECT 1 FROM memberships m JOIN organizations o ON o.id = m.org_id
                     WHERE m.user_id = u.id AND m.role = 'org:admin' AND o.plan IN ('business', 'enterprise'))""",
        ),
        dict(
            name="in more than one org",
            kind="count",
            filter="org_count > 1",
            sql="SELECT count(*) FROM (SELECT user_id FROM memberships GROUP BY user_id HAVING count(*) > 1) t",
        ),
        dict(
            name="no org at all, not banned",
            kind="count",
            filter="org_count = 0 AND banned = false",
            sql="""SELECT count(*) FROM users u WHERE NOT u.banned
                   AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id)""",
        ),
        dict(
            name="facet: users per org plan",
            kind="facet",
            filter=None,
            facet="org.public.plan",
            sql=f"""SELECT o.plan, count(DISTINCT m.user_id) FROM memberships m JOIN organizations o ON o.id = m.org_id
                    GROUP BY 1""",
        ),
        dict(
            name="facet: org plans of admins",
            kind="facet",
            filter='org.role = "org:admin" AND banned = false',
            facet="org.public.plan",
            sql=f"""SELECT o.plan, count(DISTINCT m.user_id) FROM memberships m JOIN organizations o ON o.id = m.org_id
                    JOIN users u ON u.id = m.user_id
                    WHERE NOT u.banned AND m.user_id IN (SELECT user_id FROM memberships WHERE role = 'org:admin')
                    GROUP BY 1""",
        ),
        dict(
            name="top-50 admins by org_count",
            kind="top",
            filter='org[role = "org:admin"]',
            sort="org_count",
            sql="""SELECT user_id FROM memberships GROUP BY user_id
                   HAVING bool_or(role = 'org:admin') ORDER BY count(*) DESC, user_id LIMIT 50""",
        ),
    ]


class OrgPostgres(Postgres):
    def __init__(self, users_file, orgs_file, memberships_file, work, log):
        super().__init__(users_file, work, log)
        started = time.monotonic()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            copy_jsonl(conn, "raw_orgs", orgs_file)
            copy_jsonl(conn, "raw_memberships", memberships_file)
            conn.execute("""
                CREATE TABLE organizations AS SELECT doc ->> 'id' AS id, doc ->> 'slug' AS slug,
                    (doc ->> 'created_at')::bigint AS created_at, (doc ->> 'members_count')::int AS members_count,
                    doc -> 'public_metadata' ->> 'plan' AS plan, doc -> 'public_metadata' AS public_metadata
                FROM raw_orgs""")
            conn.execute("""
                CREATE TABLE memberships AS SELECT doc ->> 'id' AS id, doc -> 'organization' ->> 'id' AS org_id,
                    doc -> 'public_user_data' ->> 'user_id' AS user_id, doc ->> 'role' AS role,
                    (doc ->> 'created_at')::bigint AS created_at, doc -> 'public_metadata' AS public_metadata
                FROM raw_memberships""")
            for ddl in [
                "DROP TABLE raw_orgs",
                "DROP TABLE raw_memberships",
                "ALTER TABLE organizations ADD PRIMARY KEY (id)",
                "CREATE INDEX ON organizations (plan, id)",
                "CREATE INDEX ON organizations (created_at, members_count)",
                "ALTER TABLE memberships ADD PRIMARY KEY (id)",
                "CREATE INDEX ON memberships (org_id, role, user_id)",
                "CREATE INDEX ON memberships (user_id, role)",
                "CREATE INDEX ON memberships (role, org_id, user_id)",
                "VACUUM ANALYZE organizations",
                "VACUUM ANALYZE memberships",
            ]:
                conn.execute(ddl)
            prewarm(conn, "organizations")
            prewarm(conn, "memberships")
            self.size += conn.execute(
                "SELECT pg_total_relation_size('organizations') + pg_total_relation_size('memberships')").fetchone()[0]
        self.load_s += time.monotonic() - started

    def answer(self, q):
        return bench.normalize(q["kind"], self.conn.execute(q["sql"]).fetchall())


class OrgDuckDB(DuckDB):
    def __init__(self, users_file, orgs_file, memberships_file, work):
        super().__init__(users_file, work)
        started = time.monotonic()
        self.conn.execute(f"""
            CREATE TABLE organizations AS SELECT id, slug, created_at, members_count,
                public_metadata ->> '$.plan' AS plan
            FROM read_json('{orgs_file}', format = 'newline_delimited',
                columns = {{id: 'VARCHAR', slug: 'VARCHAR', created_at: 'BIGINT', members_count: 'INTEGER',
                            public_metadata: 'JSON'}})""")
        self.conn.execute(f"""
            CREATE TABLE memberships AS SELECT id, organization ->> '$.id' AS org_id,
                public_user_data ->> '$.user_id' AS user_id, role, created_at
            FROM read_json('{memberships_file}', format = 'newline_delimited',
                columns = {{id: 'VARCHAR', organization: 'JSON', public_user_data: 'JSON', role: 'VARCHAR',
                            created_at: 'BIGINT'}})""")
        self.conn.execute("CHECKPOINT")
        self.load_s += time.monotonic() - started
        self.size = self.path.stat().st_size

    def answer(self, q):
        return bench.normalize(q["kind"], self.conn.execute(q["sql"]).fetchall())


def cutoff_of(orgs_file):
    newest = 0
    with open(orgs_file) as f:
        for line in f:
            newest = max(newest, json.loads(line)["created_at"])
    return newest - 365 * DAY_MS


def bench_size(users, args, work, log):
    print(f"== {users:,} users with organizations", flush=True)
    users_file = work / "users.jsonl"
    subprocess.run([BIN, "generate", "--users", str(users), "--organizations", "-o", users_file], check=True)
    orgs_file = Path(f"{users_file}.organizations.jsonl")
    memberships_file = Path(f"{users_file}.memberships.jsonl")
    counts = [sum(1 for _ in open(path)) for path in (orgs_file, memberships_file)]
    print(f"   {counts[0]:,} organizations, {counts[1]:,} memberships", flush=True)
    service = Service(users, work, log, fake_args=("--organizations",))
    print(f"   service backfill {service.backfill_s:.1f} s", flush=True)
    pg = OrgPostgres(users_file, orgs_file, memberships_file, work, log)
    print(f"   postgres load {pg.load_s:.1f} s", flush=True)
    duck = OrgDuckDB(users_file, orgs_file, memberships_file, work)
    print(f"   duckdb load {duck.load_s:.1f} s", flush=True)
    rows = bench.compare_engines(queries(cutoff_of(orgs_file)), service, duck, pg, args)
    service.stop()
    pg.stop()
    duck.stop()
    return dict(users=users, organizations=counts[0], memberships=counts[1], service=service, pg=pg, duck=duck,
                rows=rows)


def report(results, args):
    geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))  # noqa: E731
    lines = ["# Organization benchmark", "",
             f"Machine: {bench.machine()}.", "",
             f"Produced by `bench/run --organizations --sizes {','.join(str(r['users']) for r in results)} "
             f"--runs {args.runs}` on {time.strftime('%Y-%m-%d')}. Medians (and p95) of {args.runs} runs after "
             f"{args.warmup} warm-up runs, milliseconds: the service over real gRPC (Python grpcio client), "
             "PostgreSQL over loopback TCP (three tables joined by id, btree indexes on the join and filter "
             "columns, tuned and prewarmed), DuckDB in-process (the same tables, flattened). Every answer was "
             "checked equal across the three engines.", ""]
    for r in results:
        s, pg, duck = r["service"], r["pg"], r["duck"]
        lines += [f"## {r['users']:,} users, {r['organizations']:,} organizations, {r['memberships']:,} memberships", "",
                  "| | clerk-index | PostgreSQL 15 | DuckDB |", "|---|---|---|---|",
                  f"| load | backfill from the fake Clerk over HTTP (users, organizations, memberships): {s.backfill_s:.1f} s "
                  f"| COPY + build + indexes + prewarm: {pg.load_s:.1f} s | read_json + flatten: {duck.load_s:.1f} s |",
                  f"| size on disk | {mib(s.index_bytes)} | {mib(pg.size)} | {mib(duck.size)} |",
                  f"| memory | peak RSS {s.peak_rss_kib / 1024:,.0f} MiB, {s.rss_kib / 1024:,.0f} MiB after the queries | | |",
                  "",
                  "| query | filter | answer | clerk-index | DuckDB | PostgreSQL | service/DuckDB | service/PostgreSQL |",
                  "|---|---|---|---|---|---|---|---|"]
        for q, t, size in r["rows"]:
            sv, dk, pq = t["service"], t["duckdb"], t["postgres"]
            shown = f"`{q['filter']}`" if q["filter"] else "(all)"
            if q["kind"] == "facet":
                shown += f" facet `{q['facet']}`"
            if q["kind"] == "top":
                shown += f" sort `-{q['sort']}`"
            lines.append(f"| {q['name']} | {shown.replace('|', '&#124;')} | {size:,} | {sv[0]:.2f} ({sv[1]:.2f}) | "
                         f"{dk[0]:.2f} ({dk[1]:.2f}) | {pq[0]:.2f} ({pq[1]:.2f}) | {sv[0] / dk[0]:.2f} | {sv[0] / pq[0]:.3f} |")
        duck_ratios = [t["service"][0] / t["duckdb"][0] for _, t, _ in r["rows"]]
        pg_ratios = [t["service"][0] / t["postgres"][0] for _, t, _ in r["rows"]]
        lines += [f"| **geometric mean of ratios** | | | | | | **{geo(duck_ratios):.2f}** | **{geo(pg_ratios):.3f}** |", "",
                  "A ratio below 1 means clerk-index was faster.", ""]
    lines += targets(results[-1])
    return "\n".join(lines) + "\n"


def targets(r):
    """The issue's targets, checked against the largest size of this run."""
    by_name = {q["name"]: t for q, t, _ in r["rows"]}
    slower = [f"{q['name']} {t['service'][0]:.1f} vs {t['duckdb'][0]:.1f}" for q, t, _ in r["rows"]
              if t["service"][0] > t["duckdb"][0]]
    pairs = [(q["name"], by_name[q["name"]]["service"][0] / by_name[q["pair"]]["service"][0])
             for q, _, _ in r["rows"] if "pair" in q]
    rows = [
        ("every organization query faster than DuckDB", not slower, ", ".join(slower) or "all"),
        ("correlated within 2x of the uncorrelated form", all(ratio <= 2 for _, ratio in pairs),
         ", ".join(f"{name}: {ratio:.2f}x" for name, ratio in pairs)),
    ]
    lines = [f"## Targets at {r['users']:,} users", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {detail} |" for name, ok, detail in rows]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organizations", action="store_true", help="(how bench/run chose this script)")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=str(bench.ROOT / "bench" / "ORG-RESULTS.md"))
    args = parser.parse_args()
    results = bench.run_sizes(args, bench_size, "clerk-index-org-bench-")
    Path(args.output).write_text(report(results, args))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
