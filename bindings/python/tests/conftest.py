"""Backends for the binding's tests: SQLite files in a temporary directory, and
the PostgreSQL and MariaDB clusters of tests/env/ (their URIs in the
environment, as tests/env/with_servers.sh exports them). A server backend
whose variables are missing is skipped, except under CI where it fails."""

import os
import sqlite3
import urllib.parse

import pytest

import shardroute

SHARDS = ("shard0", "shard1")


class Backend:
    name = ""
    has_replica = False

    def router(self, **options):
        shards = {}
        for db in SHARDS:
            spec = {"primary": self.uri(self.primary, db)}
            if self.has_replica:
                spec["replicas"] = [self.uri(self.replica, db)]
            shards[db] = spec
        opts = {"balance.policy": "round_robin"}
        opts.update(options)
        return shardroute.Router.from_dict({"options": opts, "shards": shards})


class SQLite(Backend):
    name = "sqlite"
    role_sql = None

    def __init__(self, tmp):
        self.primary = str(tmp)

    def uri(self, base, db):
        return f"sqlite:{base}/{db}.db"

    def direct(self, db, sql, params=()):
        con = sqlite3.connect(f"{self.primary}/{db}.db")
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


class Postgres(Backend):
    name = "postgres"
    has_replica = True
    role_sql = "SELECT CASE WHEN pg_is_in_recovery() THEN 'replica' ELSE 'primary' END"

    def __init__(self):
        self.primary = os.environ["SR_PG_PRIMARY"]
        self.replica = os.environ["SR_PG_REPLICA1"]

    def uri(self, base, db):
        return f"{base}/{db}"

    def direct(self, db, sql, params=()):
        import psycopg2

        con = psycopg2.connect(f"{self.primary}/{db}")
        try:
            with con.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()


class MariaDB(Backend):
    name = "mysql"
    has_replica = True
    role_sql = ("SELECT CASE WHEN @@read_only = 1 THEN 'replica' ELSE 'primary' END")

    def __init__(self):
        self.primary = os.environ["SR_MY_PRIMARY"]
        self.replica = os.environ["SR_MY_REPLICA"]

    def uri(self, base, db):
        return f"{base}/{db}"

    def direct(self, db, sql, params=()):
        import MySQLdb

        u = urllib.parse.urlsplit(self.primary)
        con = MySQLdb.connect(host=u.hostname, port=u.port or 3306, user=u.username,
                              passwd=urllib.parse.unquote(u.password or ""), db=db)
        try:
            cur = con.cursor()
            cur.execute(sql.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            con.close()


def _server(cls, variables):
    missing = [v for v in variables if not os.environ.get(v)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{cls.name}: {', '.join(missing)} not set (tests/env/with_servers.sh)")
        pytest.skip(f"{cls.name}: no server in the environment")
    return cls()


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SQLite(tmp_path)
    if request.param == "postgres":
        return _server(Postgres, ["SR_PG_PRIMARY", "SR_PG_REPLICA1"])
    return _server(MariaDB, ["SR_MY_PRIMARY", "SR_MY_REPLICA"])


@pytest.fixture
def sqlite_router(tmp_path):
    b = SQLite(tmp_path)
    with b.router() as r:
        yield r
