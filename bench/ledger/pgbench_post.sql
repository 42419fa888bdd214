-- pgbench script: one ledger_post_one() call (a two-leg transfer between two of the 1,000 bench
-- merchants, by key and by id as journal_post sends them once the accounts are cached), no Python:
-- what the database side of a posting costs next to pgbench -N. The bench passes -D base=<the first
-- merchant's id> (the warm-up creates the 1,000 merchants with consecutive ids).
\set a random(0, 999)
\set b random(0, 999)
\set c (:a + 1 + :b % 998) % 1000
SELECT * FROM ledger_post_one(ARRAY['mer_bench' || lpad(:a::text, 5, '0'), 'mer_bench' || lpad(:c::text, 5, '0')], '{merchant_available,merchant_available}', '{EUR,EUR}', ARRAY[:base + :a, :base + :c]::bigint[], '{f,f}', '{1,2}', '{5,-5}', 'pgb:' || gen_random_uuid(), 'transfer', '', '{}', now(), 0::smallint, NULL, NULL);
