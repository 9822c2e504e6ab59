"""The `shardroute` command against real SQLite files, PostgreSQL and MariaDB
servers (tests/env/with_servers.sh), promtool and a real Prometheus server.

Run by meson (suite 'cli'), which sets SHARDROUTE_CLI to the built program:
    tests/env/with_servers.sh meson test -C build --suite cli --print-errorlogs
The PostgreSQL and MariaDB cases are skipped when their variables are not set
(outside with_servers.sh); every subprocess is bounded by a timeout, and the
servers a test starts are killed by PID whatever happens.
"""
import csv
import ctypes
import io
import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

CLI = os.environ.get("SHARDROUTE_CLI", "shardroute")
TIMEOUT = 60
RUN_ID = os.getpid()


def cli_env():
    env = dict(os.environ)
    # The program is its own (possibly sanitised) executable: nothing preloaded into it.
    env.pop("LD_PRELOAD", None)
    return env


def run(*args, timeout=TIMEOUT, check_password=True):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env=cli_env())
    if check_password:
        for secret in secrets():
            assert secret not in p.stdout and secret not in p.stderr, "a password was printed"
    return p


def secrets():
    out = []
    for var in ("SR_MY_PRIMARY", "SR_MY_REPLICA", "SR_PG_PRIMARY"):
        uri = os.environ.get(var)
        if uri:
            pw = urllib.parse.urlsplit(uri).password
            if pw:
                out.append(pw)
    out.append("cli-test-secret")
    return out


def one_line(stderr):
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


def write(path, text):
    path.write_text(text)
    return str(path)


# ---- the library's own hash, independently: XXH3-64 of the key's bytes -------------------

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def keyrange_shard(key, nshards):
    """The shard of an even keyrange split: integer keys hash their 8 little-endian bytes."""
    data = struct.pack("<q", key) if isinstance(key, int) else key.encode()
    h = _xxh.XXH3_64bits(data, len(data))
    return h * nshards >> 64


# ---- configurations ---------------------------------------------------------------------


@pytest.fixture
def sqlite_conf(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    return write(tmp_path / "sqlite.conf", f"""# two SQLite shards, keyrange
[shard -80]
primary = sqlite:{a}
replica = sqlite:{a}
[shard 80-]
primary = sqlite:{b}
""")


def pg_uri(db):
    base = os.environ.get("SR_PG_PRIMARY")
    if not base:
        pytest.skip("SR_PG_PRIMARY not set: run under tests/env/with_servers.sh")
    return f"{base}/{db}"


def my_uri(db):
    base = os.environ.get("SR_MY_PRIMARY")
    if not base:
        pytest.skip("SR_MY_PRIMARY not set: run under tests/env/with_servers.sh")
    return f"{base}/{db}"


@pytest.fixture
def pg_conf(tmp_path):
    return write(tmp_path / "pg.conf", f"""[shard -80]
primary = {pg_uri('shard0')}
replica = {os.environ['SR_PG_REPLICA1']}/shard0
[shard 80-]
primary = {pg_uri('shard1')}
replica = {os.environ['SR_PG_REPLICA2']}/shard1
""")


@pytest.fixture
def my_conf(tmp_path):
    return write(tmp_path / "my.conf", f"""[shard -80]
primary = {my_uri('shard0')}
replica = {os.environ['SR_MY_REPLICA']}/shard0
[shard 80-]
primary = {my_uri('shard1')}
""")


# ---- help and usage errors ----------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["route", "exec", "health", "metrics", "serve"])
def test_help(cmd):
    p = run(cmd, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: shardroute {cmd}")
    assert "Exit status" in p.stdout
    assert run("help", cmd).stdout == p.stdout


def test_top_level_help_and_version():
    p = run("--help")
    assert p.returncode == 0
    for cmd in ("route", "exec", "health", "metrics", "serve"):
        assert f"  {cmd} " in p.stdout
    p = run("--version")
    assert p.returncode == 0 and p.stdout.startswith("shardroute ")
    p = run()
    assert p.returncode == 2 and "usage:" in p.stderr


def test_usage_errors(sqlite_conf, tmp_path):
    cases = [
        (["frobnicate"], "unknown command"),
        (["route", "-c", sqlite_conf], "no KEY"),
        (["route", "-c", sqlite_conf, "--int", "x1"], "not a 64-bit decimal integer"),
        (["route", "-c", sqlite_conf, "--int", "--text", "1"], "exclude each other"),
        (["route", "-c", sqlite_conf, "--bogus", "1"], "unknown option '--bogus'"),
        (["route", "1"], "no configuration"),
        (["exec", "-c", sqlite_conf, "--key", "1", "--all", "SELECT 1"], "one of --key, --shard and --all"),
        (["exec", "-c", sqlite_conf, "SELECT 1"], "the configuration has 2 shards"),
        (["exec", "-c", sqlite_conf, "--shard", "nosuch", "SELECT 1"], "no shard 'nosuch'"),
        (["exec", "-c", sqlite_conf, "--key", "1"], "no SQL"),
        (["exec", "-c", sqlite_conf, "--key"], "needs a value"),
        (["exec", "-c", sqlite_conf, "--read", "--write", "-k", "1", "SELECT 1"], "exclude each other"),
        (["route", "-c", sqlite_conf, "-5"], "goes after '--'"),
        (["exec", "-c", sqlite_conf, "-k", "1", "-x", "SELECT ?"], "unknown option '-x'"),
        (["health", "-c", sqlite_conf, "extra"], "unexpected argument"),
        (["metrics", "-c", sqlite_conf, "-s", "nonsense"], "NAME=VALUE"),
        (["metrics", "-c", sqlite_conf, "-s", "pool.max_size=0"], "out of range"),
        (["serve", "-c", sqlite_conf], "--listen"),
        (["serve", "-c", sqlite_conf, "--listen", "9187"], "ADDRESS:PORT"),
        (["serve", "-c", sqlite_conf, "--listen", "127.0.0.1:99999"], "port"),
    ]
    for args, expect in cases:
        p = run(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        line = one_line(p.stderr)
        assert line.startswith("shardroute"), line
        assert expect in line, (args, line)
        assert p.stdout == "", (args, p.stdout)


def test_bad_configuration(tmp_path):
    bad = {
        "missing": None,
        "syntax": "[shard a\nprimary = sqlite:x.db\n",
        "option": "pool.max_size = many\n[shard a]\nprimary = sqlite:x.db\n",
        "no_primary": "[shard a]\nreplica = sqlite:x.db\n",
        "no_driver": "[shard a]\nprimary = nosuch://h/db\n",
        "password": "[shard a]\nprimary = postgresql://u:cli-test-secret@127.0.0.1:1/db?bogus\n[shard a]\n",
    }
    for name, text in bad.items():
        path = tmp_path / f"{name}.conf"
        if text is not None:
            path.write_text(text)
        for cmd in (["route", "1"], ["exec", "-k", "1", "SELECT 1"], ["health"], ["metrics"]):
            p = run(cmd[0], "-c", path, *cmd[1:])
            assert p.returncode == 2, (name, cmd, p.stderr)
            line = one_line(p.stderr)
            assert line.startswith(f"shardroute {cmd[0]}: "), line
            assert p.stdout == ""
    p = run("route", "-c", tmp_path / "syntax.conf", "1")
    assert "line 1" in p.stderr


# ---- route --------------------------------------------------------------------------------


def test_route_matches_the_library_hash(sqlite_conf):
    keys = [0, 1, 42, -7, 2**63 - 1, "acme", "tenant-9", "x y"]
    p = run("route", "-c", sqlite_conf, "--json", "--", *keys)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [d["key"] for d in doc] == [str(k) for k in keys]
    names = ["-80", "80-"]
    for d, k in zip(doc, keys):
        want = keyrange_shard(k, 2)
        assert d["type"] == ("int" if isinstance(k, int) else "text")
        assert d["shard"] == want and d["name"] == names[want], (k, d)
        roles = [n["role"] for n in d["nodes"]]
        assert roles == (["primary", "replica"] if want == 0 else ["primary"])
        assert d["nodes"][0]["uri"].startswith("sqlite:")


def test_route_int_and_text(sqlite_conf, tmp_path):
    # 42 and "42" are different keys: --text hashes the two bytes.
    digits = [str(i) for i in range(20)]
    as_int = json.loads(run("route", "-c", sqlite_conf, "--json", "--int", *digits).stdout)
    as_text = json.loads(run("route", "-c", sqlite_conf, "--json", "--text", *digits).stdout)
    auto = json.loads(run("route", "-c", sqlite_conf, "--json", *digits).stdout)
    assert [d["shard"] for d in as_int] == [keyrange_shard(int(k), 2) for k in digits]
    assert [d["shard"] for d in as_text] == [keyrange_shard(k, 2) for k in digits]
    assert auto == as_int
    assert {d["type"] for d in as_text} == {"text"}
    assert [d["shard"] for d in as_int] != [d["shard"] for d in as_text]

    # The table: a header, a rule, one row per key.
    p = run("route", "-c", sqlite_conf, "42", "acme")
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and len(lines) == 4
    assert [c.strip() for c in lines[0].split("|")] == ["key", "type", "shard", "name", "primary", "replicas"]
    row = [c.strip() for c in lines[2].split("|")]
    assert row[:4] == ["42", "int", str(keyrange_shard(42, 2)), ["-80", "80-"][keyrange_shard(42, 2)]]
    rows = list(csv.reader(io.StringIO(run("route", "-c", sqlite_conf, "--csv", "acme").stdout)))
    assert rows[0][:4] == ["key", "type", "shard", "name"] and rows[1][:2] == ["acme", "text"]

    # Pinned keys win over the distribution; a range key outside every range has no shard.
    pinned = write(tmp_path / "pinned.conf", """shard.distribution = range
[shard low]
primary = sqlite::memory:
range = ..100
pin_int = 500
[shard high]
primary = sqlite::memory:
range = 100..1000
""")
    doc = json.loads(run("route", "-c", pinned, "--json", "5", "150", "500").stdout)
    assert [d["name"] for d in doc] == ["low", "high", "low"]
    p = run("route", "-c", pinned, "5", "5000")
    assert p.returncode == 1
    assert "5000" in one_line(p.stderr)
    assert " 5 " in p.stdout


# ---- exec ---------------------------------------------------------------------------------


def table_rows(out):
    """The cells of an aligned table, without the header rule and the row count."""
    lines = [ln for ln in out.splitlines() if ln and not ln.startswith("(")]
    assert set(lines[1]) <= set("-+")
    return [[c.strip() for c in ln.split("|")] for ln in [lines[0]] + lines[2:]]


def exec_suite(conf, backend, table, ddl, bytes_type, bool_type, float_expr):
    """What every backend must show: the same rows in three formats."""
    q = run("exec", "-c", conf, "--all", "--write", f"DROP TABLE IF EXISTS {table}")
    assert q.returncode == 0, q.stderr
    q = run("exec", "-c", conf, "--all", "--write", ddl)
    assert q.returncode == 0, q.stderr
    rows = [(1, "alice", "1.50", "1"), (2, "bob, \"the\" builder", "2.25", "0"),
            (3, None, "-3.00", "1"), (42, "élan", "0.00", "0")]
    for k, name, amount, flag in rows:
        q = run("exec", "-c", conf, "--key", k, "--write", "--null", "NULL",
                f"INSERT INTO {table} (id, name, amount, flag, data) VALUES (?, ?, ?, ?, ?)",
                k, name if name is not None else "NULL", amount, flag, "NULL")
        assert q.returncode == 0, q.stderr
        assert q.stdout == "1 row affected\n"
        # Where it ran: the key's shard, its primary (a write), and why.
        line = one_line(q.stderr)
        assert line.startswith(f"shard {['-80', '80-'][keyrange_shard(k, 2)]} primary "), line
        assert " (write) in " in line and line.endswith(" ms")

    sel = f"SELECT id, name, amount, flag FROM {table} ORDER BY id"
    p = run("exec", "-c", conf, "--all", "--write", sel)
    assert p.returncode == 0, p.stderr
    got = table_rows(p.stdout)
    assert got[0] == ["shard", "id", "name", "amount", "flag"]
    assert [r[1] for r in got[1:]] == ["1", "2", "3", "42"]
    assert got[1][0] == ["-80", "80-"][keyrange_shard(1, 2)]
    assert got[3][2] == "NULL"
    assert got[2][2] == 'bob, "the" builder'
    assert p.stdout.rstrip().endswith("(4 rows)")

    p = run("exec", "-c", conf, "--all", "--write", "--csv", sel)
    assert p.returncode == 0, p.stderr
    rows_csv = list(csv.reader(io.StringIO(p.stdout)))
    assert rows_csv[0] == ["shard", "id", "name", "amount", "flag"]
    assert rows_csv[2][2] == 'bob, "the" builder' and rows_csv[4][2] == "élan"
    assert '"bob, ""the"" builder"' in p.stdout
    assert rows_csv[3][2] == ""  # NULL is an empty field

    p = run("exec", "-c", conf, "--key", 42, "--write", "--json",
            f"SELECT id, name, amount, flag, {float_expr} AS f, NULL AS z FROM {table} WHERE id = ?", 42)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [c["name"] for c in doc["columns"]] == ["id", "name", "amount", "flag", "f", "z"]
    types = [c["type"] for c in doc["columns"]]
    assert types[0] == "int" and types[1] == "text" and types[2] == "numeric"
    assert types[3] == bool_type and types[4] == "float"
    row = doc["rows"][0]
    # Exact decimals stay strings (SQLite keeps NUMERIC 0.00 as the integer 0).
    assert row[0] == 42 and row[1] == "élan" and isinstance(row[2], str) and float(row[2]) == 0
    assert row[4] == 1.5 and row[5] is None
    assert row[3] in (False, 0)
    assert doc["route"]["name"] == ["-80", "80-"][keyrange_shard(42, 2)]
    assert doc["route"]["node"] == 0 and doc["route"]["role"] == "primary" and doc["route"]["reason"] == "write"
    assert doc["elapsed_ms"] > 0

    # Bytes are hex, as PostgreSQL prints bytea.
    p = run("exec", "-c", conf, "--key", 1, "--write", "--json", f"SELECT {bytes_type} AS b")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows"] == [["\\x00ff41"]]

    # A scatter aggregate: one row combined from both shards, its shard NULL.
    p = run("exec", "-c", conf, "--all", "--write", "--json", f"SELECT count(*) AS n FROM {table}")
    doc = json.loads(p.stdout)
    assert doc["rows"] == [[None, 4]]

    # A failing statement: exit status 1, one line naming the shard and the node.
    p = run("exec", "-c", conf, "--key", 1, f"SELECT nosuch FROM {table}")
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert line.startswith("shardroute exec: ") and "shard '" in line
    assert p.stdout == ""
    run("exec", "-c", conf, "--all", "--write", f"DROP TABLE {table}")


def test_exec_sqlite(sqlite_conf):
    exec_suite(sqlite_conf, "sqlite", "cli_t",
               "CREATE TABLE cli_t (id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC(10,2), flag BOOLEAN, data BLOB)",
               "x'00ff41'", "bool", "1.5")


def test_exec_postgres(pg_conf):
    t = f"cli_t_{RUN_ID}"
    exec_suite(pg_conf, "postgres", t,
               f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(10,2), flag boolean, data bytea)",
               "'\\x00ff41'::bytea", "bool", "1.5::float8")


def test_exec_mariadb(my_conf):
    t = f"cli_t_{RUN_ID}"
    exec_suite(my_conf, "mysql", t,
               f"CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT, amount DECIMAL(10,2), flag BOOLEAN, data BLOB)",
               "x'00ff41'", "int", "CAST(1.5 AS DOUBLE)")


def test_exec_sqlite_details(sqlite_conf):
    run("exec", "-c", sqlite_conf, "--all", "--write", "CREATE TABLE d (k INTEGER PRIMARY KEY, v TEXT)")
    # --shard by name and by index; a negative parameter after '--'.
    p = run("exec", "-c", sqlite_conf, "--shard", "80-", "SELECT ? AS v", "-5")
    assert p.returncode == 0 and table_rows(p.stdout) == [["v"], ["-5"]]
    assert "shard 80- " in p.stderr
    p = run("exec", "-c", sqlite_conf, "--shard", "1", "--csv", "SELECT 'a' AS x, '' AS e, NULL AS n")
    assert p.stdout == 'x,e,n\na,"",\n'  # CRLF line ends, as RFC 4180 (text mode reads them as \n)
    # --text: "42" the text, not the integer.
    p = run("exec", "-c", sqlite_conf, "--key", "42", "--text", "-q", "SELECT 1")
    assert p.returncode == 0 and p.stderr == ""
    # A write on every shard: the affected rows are summed.
    for k in (1, 2, 3, 4, 5, 6):
        assert run("exec", "-q", "-c", sqlite_conf, "-k", k, "INSERT INTO d VALUES (?, 'x')", k).returncode == 0
    p = run("exec", "-c", sqlite_conf, "--all", "--write", "UPDATE d SET v = 'y'")
    assert p.stdout == "6 rows affected\n"


# ---- health -------------------------------------------------------------------------------


def test_health_live(pg_conf, my_conf, sqlite_conf):
    for conf in (pg_conf, my_conf, sqlite_conf):
        p = run("health", "-c", conf)
        assert p.returncode == 0, (conf, p.stdout, p.stderr)
        rows = table_rows(p.stdout)
        assert rows[0] == ["shard", "node", "role", "uri", "health", "lag_ms", "latency_ms", "connections", "error"]
        assert {r[4] for r in rows[1:]} == {"up"}
        p = run("health", "-c", conf, "--json")
        doc = json.loads(p.stdout)
        assert doc["ok"] is True and all(s["primary_ok"] for s in doc["shards"])
    doc = json.loads(run("health", "-c", pg_conf, "--json").stdout)
    replicas = [n for s in doc["shards"] for n in s["nodes"] if n["role"] == "replica"]
    assert replicas and all(n["lag_ms"] is not None and n["lag_ms"] >= 0 for n in replicas)


def test_health_dead_primary(tmp_path):
    live = os.environ.get("SR_PG_PRIMARY")
    good = f"primary = {live}/shard0" if live else f"primary = sqlite:{tmp_path}/ok.db"
    conf = write(tmp_path / "dead.conf", f"""connect_timeout_ms = 2000
[shard -80]
{good}
[shard 80-]
primary = postgresql://app:cli-test-secret@127.0.0.1:1/db
""")
    p = run("health", "-c", conf)
    assert p.returncode == 1, p.stdout
    assert "shard 80- has no healthy primary" in one_line(p.stderr)
    rows = table_rows(p.stdout)
    dead = [r for r in rows[1:] if r[0] == "80-" and r[2] == "primary"][0]
    assert dead[4] == "down" and "***" in dead[3]
    assert "127.0.0.1" in dead[8]  # why: the driver's message
    doc = json.loads(run("health", "-c", conf, "--json").stdout)
    assert doc["ok"] is False
    assert [s["primary_ok"] for s in doc["shards"]] == [True, False]
    # A dead replica alone is not a dead shard, unless --strict.
    conf2 = write(tmp_path / "deadrep.conf", f"""connect_timeout_ms = 2000
[shard a]
{good}
replica = postgresql://app@127.0.0.1:1/db
""")
    assert run("health", "-c", conf2).returncode == 0
    assert run("health", "-c", conf2, "--strict").returncode == 1


# ---- metrics and serve --------------------------------------------------------------------


def test_metrics_pass_promtool(sqlite_conf, pg_conf, my_conf):
    for conf in (sqlite_conf, pg_conf, my_conf):
        p = run("metrics", "-c", conf)
        assert p.returncode == 0, p.stderr
        assert "# TYPE " in p.stdout
        check = subprocess.run(["promtool", "check", "metrics"], input=p.stdout, capture_output=True,
                               text=True, timeout=TIMEOUT)
        assert check.returncode == 0, check.stdout + check.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def start_serve(conf, *extra):
    p = subprocess.Popen([CLI, "serve", "-c", conf, "--listen", "127.0.0.1:0", "--max-seconds", "120", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    line = p.stdout.readline()  # "listening on http://127.0.0.1:PORT"; bounded by --max-seconds
    assert line.startswith("listening on http://127.0.0.1:"), (line, p.poll())
    return p, line.split()[-1].strip()


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=15)


def test_serve_endpoints(sqlite_conf, tmp_path):
    p, base = start_serve(sqlite_conf, "--interval", "200")
    try:
        code, headers, body = http_get(base + "/metrics")
        assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE " in body
        assert http_get(base + "/healthz")[:3:2] == (200, "ok\n")
        assert http_get(base + "/nope")[0] == 404
        req = urllib.request.Request(base + "/metrics", method="POST", data=b"x")
        try:
            code = urllib.request.urlopen(req, timeout=5).status
        except urllib.error.HTTPError as e:
            code = e.code
        assert code == 405
    finally:
        stop(p)
    assert p.returncode == 0, p.stderr.read()
    p.stdout.close()
    p.stderr.close()

    # A dead primary: /healthz turns 503 once the probes have ejected it.
    dead = write(tmp_path / "dead.conf", "connect_timeout_ms = 1000\n[shard a]\nprimary = postgresql://u@127.0.0.1:1/db\n")
    p, base = start_serve(dead, "--interval", "100")
    try:
        deadline = time.monotonic() + 30
        while True:
            code, _, body = http_get(base + "/healthz")
            if code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 503 and body == "no healthy primary: a\n"
    finally:
        stop(p)
    p.stdout.close()
    p.stderr.close()


def prom_query(prom, q):
    code, _, body = http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": q}))
    assert code == 200, body
    doc = json.loads(body)
    assert doc["status"] == "success"
    return doc["data"]["result"]


def test_prometheus_scrapes_serve(tmp_path):
    """A real Prometheus scrapes `shardroute serve` every second: the target is up and a counter moves.

    The topology has a live primary and a replica nobody listens for: the server's probe
    rounds (every 200 ms) probe the ejected replica again and again (back-off 100..200 ms),
    so shardroute_node_probes_total{result="failed"} grows, and Prometheus must see it grow.
    """
    conf = write(tmp_path / "serve.conf", f"""connect_timeout_ms = 1000
health.retry_ms = 100
health.retry_max_ms = 200
health.fail_threshold = 1
[shard a]
primary = {pg_uri('shard0')}
replica = postgresql://app:cli-test-secret@127.0.0.1:1/db
""")
    serve, base = start_serve(conf, "--interval", "200")
    prom = None
    try:
        target = base.split("//")[1]
        port = free_port()
        cfg = write(tmp_path / "prometheus.yml", f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: shardroute
    static_configs:
      - targets: ['{target}']
""")
        log = open(tmp_path / "prometheus.log", "w")
        prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, env=cli_env())
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                code, _, body = http_get(api + "/api/v1/targets", timeout=2)
                if code == 200:
                    active = json.loads(body)["data"]["activeTargets"]
                    health = [t["health"] for t in active if t["scrapeUrl"].startswith(base)]
                    if health == ["up"]:
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        assert health == ["up"], (health, (tmp_path / "prometheus.log").read_text())

        up = prom_query(api, 'up{job="shardroute"}')
        assert [r["value"][1] for r in up] == ["1"]

        # Healthy all the same: the primary answers.
        assert http_get(base + "/healthz")[0] == 200
        counter = 'shardroute_node_probes_total{job="shardroute",result="failed"}'
        first = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            res = prom_query(api, f"sum({counter})")
            if res:
                v = float(res[0]["value"][1])
                if first is None:
                    first = v
                elif v > first:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"{counter} did not move in Prometheus (first value {first})")
    finally:
        if prom is not None and prom.poll() is None:
            prom.terminate()
            try:
                prom.wait(timeout=15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(timeout=15)
        stop(serve)
        serve.stdout.close()
        serve.stderr.close()



def test_the_documented_scrape_config_and_alert_rules_are_valid(tmp_path):
    """docs/observability.md's Prometheus configuration and alert rules, as printed, pass
    promtool; the rules name metrics the command's output has."""
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "observability.md")
    with open(doc) as f:
        text = f.read()
    blocks = text.split("```yaml\n")[1:]
    blocks = [b.split("```")[0] for b in blocks]
    config = next(b for b in blocks if b.startswith("scrape_configs:"))
    rules = next(b for b in blocks if b.startswith("groups:"))
    write(tmp_path / "prometheus.yml", config)
    write(tmp_path / "rules.yml", rules)
    for args in (["check", "config", str(tmp_path / "prometheus.yml")],
                 ["check", "rules", str(tmp_path / "rules.yml")]):
        p = subprocess.run(["promtool", *args], capture_output=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    for metric in ("shardroute_node_up", "shardroute_replica_lag_seconds"):
        assert metric in rules
        assert f"| `{metric}` | gauge |" in text  # documented, as a gauge
