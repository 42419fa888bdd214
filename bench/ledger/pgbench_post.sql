-- pgbench script: one ledger_post_batch() call (a two-leg transfer between two of the 1,000
-- bench merchants), no Python: what the database side of a posting costs next to pgbench -N.
\set a random(0, 999)
\set b random(0, 999)
SELECT * FROM ledger_post_batch(ARRAY['mer_bench' || lpad(:a::text, 5, '0'), 'mer_bench' || lpad(((:a + 1 + :b % 998) % 1000)::text, 5, '0')], '{merchant_available,merchant_available}', '{EUR,EUR}', '{liability,liability}', '{f,f}', '{f,f}', '{f,f}', '{t,t}', 16, ARRAY['pgb:' || gen_random_uuid()], '{transfer}', '{""}', '{"{}"}', ARRAY[now()], '{0}', '{NULL}', '{NULL}', '{NULL}', '{2}', '{1,2}', '{5,-5}', false);
