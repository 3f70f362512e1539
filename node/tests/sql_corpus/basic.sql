-- Each statement runs alone (simple query) on PostgreSQL 15 and on a node Session; rows,
-- row counts and errors (SQLSTATE, message, DETAIL, position) must agree.
CREATE TABLE acc (aid int PRIMARY KEY, bid int NOT NULL, abalance int DEFAULT 0, filler varchar(20))
CREATE TABLE acc (aid int PRIMARY KEY)
CREATE TABLE IF NOT EXISTS acc (aid int PRIMARY KEY)
INSERT INTO acc (aid, bid, filler) VALUES (1, 1, 'one'), (2, 1, 'two'), (3, 2, 'three')
INSERT INTO acc VALUES (4, 2, 40, 'four') RETURNING aid, abalance
INSERT INTO acc VALUES (1, 1)
INSERT INTO acc (aid) VALUES (10)
INSERT INTO acc VALUES ('x', 1)
INSERT INTO acc (aid, nope) VALUES (1, 2)
INSERT INTO acc VALUES (5, 1, 0, 'this is far too long for twenty')
INSERT INTO acc VALUES (5, 1, 0, 'x', 9)
INSERT INTO acc VALUES (2147483648, 1)
INSERT INTO acc VALUES (5.5, 1) RETURNING aid
SELECT * FROM acc ORDER BY aid
SELECT abalance FROM acc WHERE aid = 4
SELECT aid, filler FROM acc WHERE aid > 1 AND aid <= 4 ORDER BY aid DESC LIMIT 2
SELECT aid FROM acc WHERE aid BETWEEN 2 AND 3 ORDER BY 1
SELECT aid FROM acc ORDER BY aid LIMIT 2 OFFSET 1
SELECT aid FROM acc WHERE filler IS NULL ORDER BY aid
SELECT aid FROM acc WHERE filler IS NOT NULL AND aid IN (1, 3, 7) ORDER BY aid
SELECT aid FROM acc WHERE NOT (aid = 1) ORDER BY aid
SELECT aid, aid * 2 + 1 AS x, aid / 2, aid % 2, -aid FROM acc ORDER BY x DESC
SELECT aid || '-' || filler FROM acc WHERE aid < 3 ORDER BY 1
SELECT count(*), sum(aid), min(filler), max(aid), avg(aid) FROM acc
SELECT bid, count(*), sum(abalance) FROM acc GROUP BY bid ORDER BY bid
SELECT bid, count(*) FROM acc GROUP BY bid HAVING count(*) > 2 ORDER BY bid
SELECT avg(abalance), sum(abalance) FROM acc WHERE aid > 100
SELECT count(filler) FROM acc
UPDATE acc SET abalance = abalance + 10 WHERE aid = 1
UPDATE acc SET abalance = abalance - 1 WHERE bid = 2
UPDATE acc SET filler = upper(filler) WHERE aid >= 3 RETURNING aid, filler
UPDATE acc SET nope = 1
UPDATE acc SET aid = 2 WHERE aid = 1
UPDATE acc SET bid = NULL WHERE aid = 1
UPDATE acc SET abalance = 'abc'
SELECT * FROM acc ORDER BY aid
DELETE FROM acc WHERE aid = 10
DELETE FROM acc WHERE aid > 100
SELECT nope FROM acc
SELECT acc.nope FROM acc
SELECT x.aid FROM acc
SELECT * FROM nope
SELECT * FROM acc WHERE filler = 1
SELECT bid, aid FROM acc GROUP BY bid
SELECT count(*) FROM acc WHERE count(*) > 1
SELECT nosuch(1)
SELECT 1/0
SELECT 1 % 0
SELECT 2147483647 + 1
SELECT 'abc'::int
SELECT '99999'::int2
SELECT 99999::int2
SELECT 1.5 + 1, 10 / 4, 10 / 4.0, 7 % 3, 2 * 3.25
SELECT 'a' || 'b', length('hello'), lower('ABC'), upper('abc'), md5('walstream')
SELECT coalesce(NULL, 'x'), coalesce(NULL, NULL, 3), coalesce(1, 2)
SELECT 1 = 1, 1 < 2, 'a' > 'b', 1 <> 1, NULL = 1, NULL IS NULL
SELECT true AND NULL, false AND NULL, true OR NULL, NOT true
SELECT 5 IN (1, 5), 5 NOT IN (1, 2), 3 BETWEEN 1 AND 5, 3 NOT BETWEEN 1 AND 2
SELECT 'abc' LIKE 'a%', 'abc' LIKE '_b_', 'abc' NOT LIKE '%d'
SELECT '1'::int + 2, '2.5'::float8 * 2, 3::text, '10'::bigint * 3
SELECT 1::bool, 't'::boolean, 'yes'::bool
SELECT CAST(42 AS text), CAST('7' AS int)
SELECT 9223372036854775807 + 1
SELECT -2147483648, -32768::int2
SELECT 1e3, 0.1 + 0.2, 1.0 / 3
SELECT sum(x), avg(x), count(x) FROM generate_series(1, 100) AS g(x)
SELECT x FROM generate_series(1, 10, 3) AS x
SELECT x * 2 FROM generate_series(3, 1, -1) AS s(x)
CREATE TABLE kv (k text PRIMARY KEY, v int)
INSERT INTO kv SELECT 'k' || i, i FROM generate_series(1, 5) AS s(i)
INSERT INTO kv VALUES ('k1', 100) ON CONFLICT (k) DO NOTHING
INSERT INTO kv VALUES ('k1', 100), ('k9', 9) ON CONFLICT (k) DO NOTHING RETURNING k
INSERT INTO kv VALUES ('k2', 200) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v + kv.v RETURNING k, v
INSERT INTO kv VALUES ('k3', 1), ('k3', 2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v
INSERT INTO kv VALUES ('k4', 1) ON CONFLICT (v) DO NOTHING
SELECT * FROM kv ORDER BY k
SELECT k FROM kv WHERE k > 'k3' ORDER BY k DESC
TRUNCATE kv
SELECT count(*) FROM kv
DROP TABLE kv
DROP TABLE kv
DROP TABLE IF EXISTS kv
CREATE TABLE two (a int, b int, c text, PRIMARY KEY (a, b))
INSERT INTO two VALUES (1, 1, 'x'), (1, 2, 'y'), (2, 1, 'z')
INSERT INTO two VALUES (1, 2, 'dup')
SELECT * FROM two WHERE a = 1 ORDER BY b DESC
CREATE TABLE t2 (a int PRIMARY KEY, a text)
CREATE TABLE t3 (a int PRIMARY KEY, b int PRIMARY KEY)
SHOW synchronous_commit
SHOW nope
SET nope = 1
SET synchronous_commit = 'bogus'
SELECT current_setting('synchronous_commit')
SELECT current_setting('nope')
selec 1
SELECT 1 +
SELECT * FROM acc WHERE
INSERT INTO acc VALUES (1
SELECT 'unterminated
