-- Syntax errors: message and position as scan.l / gram.y report them. (Where sqlparser's
-- grammar is more lenient than gram.y, e.g. `DELETE s`, `SELECT * FORM s`, `ORDER k`, the
-- error names another token; those are left out.)
CREATE TABLE s (k int PRIMARY KEY, v text)
INSERT INTO s VALUES
UPDATE s SET
SELECT * FROM s WHERE k =
CREATE TABLE (a int)
SELECT 1 2
INSERT INTO s (k v) VALUES (1, 2)
UPDATE s k = 1
SELECT (1
SELECT 1)
DROP s
SELECT ,
