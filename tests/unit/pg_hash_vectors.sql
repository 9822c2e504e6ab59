-- Produces tests/unit/pg_hash_vectors.h: where PostgreSQL's own PARTITION BY
-- HASH puts a set of bigint and text keys, for checking lib/keymap/pg_hash.c.
--
-- Run against a scratch PostgreSQL 15 database (UTF8 encoding, a deterministic
-- default collation) and keep the output verbatim:
--
--   psql -X -q -At -v ON_ERROR_STOP=1 -f tests/unit/pg_hash_vectors.sql > tests/unit/pg_hash_vectors.h
--
-- For each modulus M it creates a table hash-partitioned into M partitions
-- (partition r has remainder r), inserts every key and reads back the
-- partition each row was routed to (tableoid), so the vectors are the
-- server's real tuple routing, not a re-derivation. It also records the raw
-- column hash (hashint8extended / hashtextextended with HASH_PARTITION_SEED).
-- It leaves nothing behind: the scratch schema is dropped at the end.
\set QUIET on
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS pgvec CASCADE;
CREATE SCHEMA pgvec;
SET search_path = pgvec;

CREATE TABLE moduli (pos int PRIMARY KEY, m int NOT NULL);
INSERT INTO moduli VALUES (0, 2), (1, 3), (2, 4), (3, 7), (4, 16), (5, 64), (6, 1024);

-- ---- keys ----
CREATE TABLE int_keys (id serial PRIMARY KEY, k bigint NOT NULL UNIQUE);
INSERT INTO int_keys (k)
SELECT DISTINCT v FROM (
    SELECT unnest(ARRAY[
        0, 1, -1, 2, -2, 42, -42, 127, 128, 255, 256, -255, -256, 65535, 65536, -65536,
        2147483646, 2147483647, 2147483648, -2147483647, -2147483648, -2147483649,
        4294967295, 4294967296, 4294967297, -4294967295, -4294967296, -4294967297,
        1000000000000, -1000000000000, 1234567890123456789, -1234567890123456789,
        9223372036854775806, 9223372036854775807, -9223372036854775807, -9223372036854775808
    ]::bigint[]) AS v
    UNION ALL SELECT g FROM generate_series(3, 120) g
    UNION ALL SELECT -g FROM generate_series(3, 60) g
    -- wide values of both signs: the top 64 bits of md5(i)
    UNION ALL SELECT ('x' || md5('k' || g))::bit(64)::bigint FROM generate_series(1, 80) g
) s;

CREATE TABLE text_keys (id serial PRIMARY KEY, k text NOT NULL UNIQUE);
INSERT INTO text_keys (k)
SELECT DISTINCT v FROM (
    -- every tail length 0..11 and one to three full 12-byte blocks
    SELECT left('abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ', g) AS v FROM generate_series(0, 46) g
    UNION ALL SELECT 'user:' || g FROM generate_series(1, 60) g
    UNION ALL SELECT md5('t' || g) FROM generate_series(1, 40) g
    UNION ALL SELECT unnest(ARRAY[
        ' ', '0', '42', '-1', 'NULL', 'a b', 'tab	tab', 'quote"back\slash', '??=', 'é', 'naïve', 'ключ',
        'Ελληνικά', '日本語', '日本語のキー', 'Ünïcödé', '🙂', 'a🙂b', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ключ 鍵 🔑',
        repeat('x', 100), repeat('abc', 333), repeat('é', 500), repeat('0123456789', 400),
        repeat('日本', 300)
    ])
) s;

-- ---- routing through real partitioned tables ----
CREATE TABLE int_part (k bigint NOT NULL, m int NOT NULL, r int NOT NULL);
CREATE TABLE text_part (k text NOT NULL, m int NOT NULL, r int NOT NULL);

CREATE PROCEDURE route_all(m int) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'CREATE TABLE ti (k bigint NOT NULL) PARTITION BY HASH (k)';
    EXECUTE 'CREATE TABLE tt (k text NOT NULL) PARTITION BY HASH (k)';
    FOR r IN 0 .. m - 1 LOOP
        EXECUTE format('CREATE TABLE ti_%s PARTITION OF ti FOR VALUES WITH (MODULUS %s, REMAINDER %s)', r, m, r);
        EXECUTE format('CREATE TABLE tt_%s PARTITION OF tt FOR VALUES WITH (MODULUS %s, REMAINDER %s)', r, m, r);
    END LOOP;
    INSERT INTO ti SELECT k FROM int_keys;
    INSERT INTO tt SELECT k FROM text_keys;
    INSERT INTO int_part SELECT k, m, split_part(tableoid::regclass::text, '_', 2)::int FROM ti;
    INSERT INTO text_part SELECT k, m, split_part(tableoid::regclass::text, '_', 2)::int FROM tt;
    EXECUTE 'DROP TABLE ti';
    EXECUTE 'DROP TABLE tt';
END $$;

-- One transaction per modulus keeps the number of locks held at once small.
CALL route_all(2);
CALL route_all(3);
CALL route_all(4);
CALL route_all(7);
CALL route_all(16);
CALL route_all(64);
CALL route_all(1024);

-- Every key landed exactly once per modulus, in a valid partition.
DO $$
BEGIN
    IF (SELECT count(*) FROM int_part) <> (SELECT count(*) FROM int_keys) * 7
       OR (SELECT count(*) FROM text_part) <> (SELECT count(*) FROM text_keys) * 7
       OR EXISTS (SELECT 1 FROM int_part WHERE r < 0 OR r >= m)
       OR EXISTS (SELECT 1 FROM text_part WHERE r < 0 OR r >= m) THEN
        RAISE EXCEPTION 'routing table incomplete';
    END IF;
END $$;

CREATE FUNCTION to_oct(n int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT (n / 64)::text || ((n / 8) % 8)::text || (n % 8)::text
$$;

-- A text key as a C string literal: printable ASCII as is, everything else as
-- three-digit octal escapes (no hex-escape run-on, no trigraphs).
CREATE FUNCTION c_string(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '"' || coalesce(string_agg(
        CASE WHEN b BETWEEN 32 AND 126 AND b NOT IN (34, 63, 92) THEN chr(b)
             ELSE '\' || lpad(to_oct(b), 3, '0') END, '' ORDER BY i), '') || '"'
    FROM (SELECT i, get_byte(convert_to(t, 'UTF8'), i) AS b
          FROM generate_series(0, octet_length(t) - 1) i) s
$$;

-- ---- the header ----
SELECT '/*
 * GENERATED by tests/unit/pg_hash_vectors.sql against ' || version() || '
 * (server_encoding ' || current_setting('server_encoding') || ', lc_collate ' || current_setting('lc_collate') || ').
 * Do not edit: regenerate with
 *   psql -X -q -At -v ON_ERROR_STOP=1 -f tests/unit/pg_hash_vectors.sql > tests/unit/pg_hash_vectors.h
 *
 * part[j] is the remainder of the partition PostgreSQL routed the key to in a
 * table PARTITION BY HASH into pg_vec_moduli[j] partitions; hash is the
 * column hash (hashint8extended / hashtextextended with HASH_PARTITION_SEED).
 */
#ifndef PG_HASH_VECTORS_H
#define PG_HASH_VECTORS_H

#include <stddef.h>
#include <stdint.h>

#define PG_VEC_NMODULI 7
static const int pg_vec_moduli[PG_VEC_NMODULI] = {'
    || (SELECT string_agg(m::text, ', ' ORDER BY pos) FROM moduli) || '};

typedef struct pg_int_vector {
    int64_t key;
    uint64_t hash;
    int part[PG_VEC_NMODULI];
} pg_int_vector;

typedef struct pg_text_vector {
    const char *bytes;
    size_t len;
    uint64_t hash;
    int part[PG_VEC_NMODULI];
} pg_text_vector;

static const pg_int_vector pg_int_vectors[] = {';

-- INT64_MIN has no literal of its own in C.
SELECT format('    {%s, UINT64_C(0x%s), {%s}},',
              CASE WHEN k = -9223372036854775808 THEN 'INT64_MIN' ELSE 'INT64_C(' || k || ')' END,
              lpad(to_hex(hashint8extended(k, 8816678312871386365)), 16, '0'),
              (SELECT string_agg(p.r::text, ', ' ORDER BY mo.pos)
                 FROM moduli mo JOIN int_part p ON p.m = mo.m AND p.k = ik.k))
FROM int_keys ik ORDER BY k;

SELECT '};

static const pg_text_vector pg_text_vectors[] = {';

SELECT format('    {%s, %s, UINT64_C(0x%s), {%s}},',
              c_string(k), octet_length(k),
              lpad(to_hex(hashtextextended(k, 8816678312871386365)), 16, '0'),
              (SELECT string_agg(p.r::text, ', ' ORDER BY mo.pos)
                 FROM moduli mo JOIN text_part p ON p.m = mo.m AND p.k = tk.k))
FROM text_keys tk ORDER BY k COLLATE "C";

SELECT '};

#endif';

RESET search_path;
DROP SCHEMA pgvec CASCADE;
