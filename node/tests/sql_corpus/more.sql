-- Types, transaction blocks, more expressions.
CREATE TABLE ty (k bigint PRIMARY KEY, s smallint, f double precision, b boolean, t text, y bytea, ts timestamptz, v varchar(5))
INSERT INTO ty VALUES (1, 2, 1.5, true, 'a', '\x0102', '2024-01-02 03:04:05+00', 'abc')
INSERT INTO ty VALUES (2, -3, -0.25, false, 'b', 'xyz', '2000-01-01 00:00:00+00', NULL)
INSERT INTO ty VALUES (3, NULL, 1e300, NULL, NULL, NULL, NULL, 'abcdef')
INSERT INTO ty (k, s) VALUES (4, 40000)
INSERT INTO ty (k, b) VALUES (4, 'maybe')
INSERT INTO ty (k, f) VALUES (4, 'abc')
SELECT * FROM ty ORDER BY k
SELECT k, f * 2, s * 2, -f, f / 3 FROM ty WHERE f IS NOT NULL ORDER BY f
SELECT k FROM ty WHERE b ORDER BY k
SELECT k FROM ty WHERE NOT b OR b IS NULL ORDER BY k DESC
SELECT k, t FROM ty ORDER BY t NULLS FIRST, k
SELECT k, t FROM ty ORDER BY t DESC, k
SELECT DISTINCT b FROM ty ORDER BY b
SELECT k, length(y), upper(t) || lower(v) FROM ty ORDER BY k
SELECT max(ts), min(f), sum(f), avg(s), count(b) FROM ty
SELECT k FROM ty WHERE ts > '2010-01-01' ORDER BY k
SELECT k AS "Key", s AS small FROM ty WHERE k = 2
SELECT ty.k, t AS x FROM ty WHERE ty.k < 3 ORDER BY x
SELECT k FROM ty t1 WHERE t1.k = 1
SELECT CASE WHEN k > 1 THEN 'big' ELSE 'small' END FROM ty ORDER BY k
SELECT k FROM ty WHERE t LIKE 'a%' OR t ILIKE 'B'
BEGIN
INSERT INTO ty (k) VALUES (10)
SELECT count(*) FROM ty
INSERT INTO ty (k) VALUES (10)
SELECT 1
UPDATE ty SET s = 1
COMMIT
SELECT count(*) FROM ty
BEGIN
UPDATE ty SET s = s + 1 WHERE k = 1 RETURNING s
ROLLBACK
SELECT s FROM ty WHERE k = 1
START TRANSACTION
DELETE FROM ty WHERE k = 2
COMMIT
SELECT k FROM ty ORDER BY k
COMMIT
ROLLBACK
BEGIN
BEGIN
SELECT 1/0
SELECT 2
ROLLBACK
CREATE TABLE up (k int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text)
INSERT INTO up (k) VALUES (1), (2), (3) RETURNING *
INSERT INTO up VALUES (1, 5) ON CONFLICT (k) DO UPDATE SET n = up.n + EXCLUDED.n WHERE up.n = 0 RETURNING k, n
INSERT INTO up VALUES (1, 5) ON CONFLICT (k) DO UPDATE SET n = up.n + EXCLUDED.n WHERE up.n = 0 RETURNING k, n
INSERT INTO up VALUES (2, 1, 'x') ON CONFLICT (k) DO UPDATE SET note = EXCLUDED.note || '!', n = DEFAULT
INSERT INTO up SELECT g, g * 10 FROM generate_series(2, 5) g ON CONFLICT (k) DO NOTHING
SELECT * FROM up ORDER BY k
UPDATE up SET k = k + 100 WHERE k = 5 RETURNING k
DELETE FROM up WHERE n > 0 RETURNING k, n
SELECT k, n FROM up ORDER BY k
SELECT n, count(*) AS c FROM up GROUP BY n ORDER BY c DESC, n
SELECT sum(n) + 1, count(*) * 2 FROM up
SELECT 'x' || 1 || true, 1 || 'x'
SELECT 7 / 2, -7 / 2, 7 % -3, -7 % 3, 2.5 * 2, 1.0 / 8
SELECT 9223372036854775807::bigint * 2
SELECT -32768::smallint, 32767::smallint + 1::smallint
SELECT 1 WHERE NULL
SELECT 1 WHERE 1 = 1
SELECT coalesce(NULL::int, 2), NULL::text IS NULL
SELECT 'abc'::varchar(2), 'abc'::bytea, '1.50'::numeric
SELECT 3 > 'a'
SELECT abs(-5), abs(-1.5), abs(2.5::float8)
SELECT upper(1)
SELECT length()
SELECT t FROM up
SELECT * FROM up WHERE k = 'x'
SELECT k FROM up LIMIT -1
INSERT INTO up VALUES (50); SELECT 1/0
SELECT count(*) FROM up WHERE k = 50
INSERT INTO up VALUES (51); COMMIT
BEGIN; INSERT INTO up VALUES (52); COMMIT
INSERT INTO up VALUES (53); INSERT INTO up VALUES (53)
SELECT k FROM up WHERE k > 49 ORDER BY k
SELECT 1; SELECT 2
SELECT 7.5 % 2, -7.5 % 2, 10.25 % 3.1, 1.5 % 0
INSERT INTO up VALUES (60); ROLLBACK
SELECT count(*) FROM up WHERE k = 60
SELECT generate_series(1, 3)
SELECT generate_series(1, 5, 2) AS n, 'x'
INSERT INTO up SELECT generate_series(70, 72), 7
SELECT k, n FROM up WHERE k >= 70 ORDER BY k
UPDATE up SET n = n + 1 WHERE k IN (72, 70, 999, 70) RETURNING k, n
SELECT k FROM up WHERE k IN (72, NULL, 1) AND n > 0
DELETE FROM up WHERE k IN (71) AND n < 0
