-- Ledger invariants and the posting function, PostgreSQL.
-- Loaded by migration 0002 (vendor-checked). Idempotent: CREATE OR REPLACE / DROP IF EXISTS.

-- 1. and 2. (migration 0005, docs/decisions/ledger-lean-single-journal.md "Session 6"): checked once
--    per INSERT statement on ledger_entry, not once per entry row.
--
-- 1. An entry's currency is its account's (and the account exists): checked at the end of every
--    statement that inserts entries, over all its rows (a statement trigger with a transition table).
--    This replaced the composite foreign key (account_id, currency) -> ledger_account (id, currency),
--    whose check ran one query per entry; an account's id and currency never change and accounts are
--    never deleted (the guard triggers below), which is all that key's referenced side protected.
--
-- 2. A journal's entries sum to zero per currency, checked at commit, and the journal exists.
--    The same statement trigger looks at each journal the statement gave entries to: a journal that
--    exists and balances (all its visible entries, the statement's own included) needs nothing more;
--    any other (unbalanced so far, or no journal yet) gets a row in ledger_journal_check, whose
--    deferred constraint trigger checks that journal again at COMMIT (or SET CONSTRAINTS ...
--    IMMEDIATE). Entries are append-only, so a journal's entries change only through INSERT
--    statements, each of which runs this trigger: if the last statement of a transaction that gave a
--    journal entries (and was not rolled back) saw it balanced, it is balanced at commit; if it saw
--    it unbalanced, its check row (inserted in the same (sub)transaction) survives to commit.
--    A journal's entries may still arrive over several statements, before or after its row.
CREATE TABLE IF NOT EXISTS ledger_journal_check (journal_id bigint NOT NULL);

CREATE OR REPLACE FUNCTION ledger_check_entries() RETURNS trigger LANGUAGE plpgsql
-- Never JIT: the planner's estimates for a transition table are guesses, and compiling a plan for a
-- 2-row statement costs milliseconds.
SET jit = off
AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.id, n.account_id, n.currency, a.currency AS account_currency, n.amount, n.version INTO bad
      FROM ledger_new_entries n LEFT JOIN ledger_account a ON a.id = n.account_id
     WHERE a.currency IS DISTINCT FROM n.currency OR n.amount = 0 OR n.version < 1
     LIMIT 1;
    IF FOUND THEN
        IF bad.amount = 0 THEN
            RAISE EXCEPTION 'ledger: entry % has a zero amount', bad.id
                USING ERRCODE = '23514', CONSTRAINT = 'ledger_entry_amount_nonzero';
        END IF;
        IF bad.version < 1 THEN
            RAISE EXCEPTION 'ledger: entry % has version % (versions start at 1)', bad.id, bad.version
                USING ERRCODE = '23514', CONSTRAINT = 'ledger_entry_version_gte_1';
        END IF;
        RAISE EXCEPTION 'ledger: entry % of account % is in %, the account in %', bad.id, bad.account_id,
            bad.currency, coalesce(bad.account_currency, '(no such account)')
            USING ERRCODE = '23503', CONSTRAINT = 'ledger_entry_account_currency';
    END IF;
    INSERT INTO ledger_journal_check (journal_id)
    SELECT d.journal_id
      FROM (SELECT DISTINCT n.journal_id FROM ledger_new_entries n) d
     WHERE NOT EXISTS (SELECT 1 FROM ledger_journal j WHERE j.id = d.journal_id)
        OR EXISTS (SELECT 1 FROM ledger_entry e WHERE e.journal_id = d.journal_id
                    GROUP BY e.currency HAVING sum(e.amount) <> 0);
    RETURN NULL;
END $$;
-- (migration 0010, section 7) Not for the posting functions' own INSERTs: they run as
-- payera_ledger_writer (section 6), which nobody logs in as, and prove what this trigger checks
-- from the rows they hold locked. Every other role's INSERT (the owner's, a superuser's; the runtime
-- role has no INSERT here) is checked as before.
DROP TRIGGER IF EXISTS ledger_entry_checked ON ledger_entry;
CREATE TRIGGER ledger_entry_checked AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS ledger_new_entries
    FOR EACH STATEMENT WHEN (current_user <> 'payera_ledger_writer')
    EXECUTE FUNCTION ledger_check_entries();

-- The commit-time check of one journal (fires for each ledger_journal_check row, in order).
CREATE OR REPLACE FUNCTION ledger_check_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    has_journal boolean;
    bad text;
BEGIN
    SELECT EXISTS (SELECT 1 FROM ledger_journal WHERE id = NEW.journal_id),
           (SELECT currency FROM ledger_entry WHERE journal_id = NEW.journal_id
             GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1)
      INTO has_journal, bad;
    IF NOT has_journal THEN
        RAISE EXCEPTION 'ledger: an entry names no journal (%)', NEW.journal_id
            USING ERRCODE = '23503', CONSTRAINT = 'ledger_entry_journal_exists';
    END IF;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: journal % does not balance in %', NEW.journal_id, bad
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_journal_balanced';
    END IF;
    -- checked: the row has done its work (a later statement that unbalances the journal again
    -- inserts a new one)
    DELETE FROM ledger_journal_check WHERE journal_id = NEW.journal_id;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ledger_journal_check_balanced ON ledger_journal_check;
CREATE CONSTRAINT TRIGGER ledger_journal_check_balanced AFTER INSERT ON ledger_journal_check
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_journal_balanced();

-- The per-entry forms they replace.
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry;
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_account_currency_fk;
-- (migration 0006) An entry's amount is not zero and its version is at least 1: checked by the same
-- statement trigger (its first query, over the statement's rows) instead of two CHECK constraints,
-- which PostgreSQL rebuilt from their stored text for every INSERT statement. Entries are never
-- updated (section 3), so an INSERT is the only way in. The model keeps the constraints (SQLite and
-- Django's validation enforce them there); same names and SQLSTATE (23514) here.
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_amount_nonzero;
ALTER TABLE ledger_entry DROP CONSTRAINT IF EXISTS ledger_entry_version_gte_1;

-- 3. Journals and entries are append-only: no UPDATE, DELETE or TRUNCATE.
--    (A superuser may TRUNCATE, as the test runner's flush does; a superuser can bypass any
--    trigger anyway, and an owner can disable them: the application connects as a runtime role
--    that is neither, with no TRUNCATE/UPDATE/DELETE privilege here: manage.py db_grant_app_role,
--    checked by ledger/checks.py, docs/decisions/database-roles.md.)
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'ledger: % of % is not allowed: the ledger is append-only, post a reversing journal',
        TG_OP, TG_TABLE_NAME USING ERRCODE = '42501';
END $$;
DROP TRIGGER IF EXISTS ledger_journal_append_only ON ledger_journal;
CREATE TRIGGER ledger_journal_append_only BEFORE UPDATE OR DELETE ON ledger_journal
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_journal_no_truncate ON ledger_journal;
CREATE TRIGGER ledger_journal_no_truncate BEFORE TRUNCATE ON ledger_journal
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_entry_no_truncate ON ledger_entry;
CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
DROP TRIGGER IF EXISTS ledger_account_no_truncate ON ledger_account;
CREATE TRIGGER ledger_account_no_truncate BEFORE TRUNCATE ON ledger_account
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- Accounts keep their identity: only the projection and status may change.
CREATE OR REPLACE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger: accounts are never deleted' USING ERRCODE = '42501';
    END IF;
    IF (NEW.id, NEW.owner, NEW.code, NEW.currency, NEW.type, NEW.hot, NEW.parent_id, NEW.shard)
       IS DISTINCT FROM (OLD.id, OLD.owner, OLD.code, OLD.currency, OLD.type, OLD.hot, OLD.parent_id, OLD.shard) THEN
        RAISE EXCEPTION 'ledger: an account''s identity never changes' USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS ledger_account_guard ON ledger_account;
DROP TRIGGER IF EXISTS ledger_account_no_delete ON ledger_account;
CREATE TRIGGER ledger_account_no_delete BEFORE DELETE ON ledger_account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();
-- Only an UPDATE that names an identity column fires it (a column-list trigger): the projection
-- updates of a posting (balance, pending, version) skip it without even compiling its WHEN clause,
-- which cost ~10 % of a single posting's backend CPU. The WHEN clause spares PL/pgSQL when such an
-- UPDATE sets the same values. (See migrations 0004 and 0005, which replace the older forms.)
-- The id too (migration 0005): entries name their account by id, and no foreign key holds it any more.
CREATE TRIGGER ledger_account_guard BEFORE UPDATE OF id, owner, code, currency, type, hot, parent_id, shard
    ON ledger_account FOR EACH ROW
    WHEN ((NEW.id, NEW.owner, NEW.code, NEW.currency, NEW.type, NEW.hot, NEW.parent_id, NEW.shard)
          IS DISTINCT FROM (OLD.id, OLD.owner, OLD.code, OLD.currency, OLD.type, OLD.hot, OLD.parent_id, OLD.shard))
    EXECUTE FUNCTION ledger_account_guard();

-- An account's currency is an ISO 4217 code and a hot account has no balance limit (migration 0006):
-- a row trigger on INSERT and on an UPDATE naming one of those columns, whose WHEN clause spares
-- PL/pgSQL unless the row breaks a rule, instead of two CHECK constraints that PostgreSQL rebuilt and
-- evaluated for every projection UPDATE of every posting (a column-list trigger costs a posting's
-- UPDATE nothing: it does not name these columns). The guard above already refuses a change of
-- currency or hot; the limit flags may change, so the trigger covers them. The three limit CHECKs
-- (balance and pending amounts against the flags) stay: every projection UPDATE must pass them.
CREATE OR REPLACE FUNCTION ledger_account_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (NEW.currency ~ '^[A-Z]{3}$') THEN
        RAISE EXCEPTION 'ledger: account currency % is not an ISO 4217 code', NEW.currency
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_account_currency_iso';
    END IF;
    RAISE EXCEPTION 'ledger: a hot account has no balance limit'
        USING ERRCODE = '23514', CONSTRAINT = 'ledger_account_hot_unlimited';
END $$;
DROP TRIGGER IF EXISTS ledger_account_checked ON ledger_account;
CREATE TRIGGER ledger_account_checked
    BEFORE INSERT OR UPDATE OF currency, hot, debits_must_not_exceed_credits, credits_must_not_exceed_debits
    ON ledger_account FOR EACH ROW
    WHEN (NOT (NEW.currency ~ '^[A-Z]{3}$')
          OR (NEW.hot AND (NEW.debits_must_not_exceed_credits OR NEW.credits_must_not_exceed_debits)))
    EXECUTE FUNCTION ledger_account_refuse();
ALTER TABLE ledger_account DROP CONSTRAINT IF EXISTS ledger_account_currency_iso;
ALTER TABLE ledger_account DROP CONSTRAINT IF EXISTS ledger_account_hot_unlimited;
-- (migration 0010) A new account starts with an empty projection: balance, pending amounts and
-- version 0 (the posting functions then write it). The runtime role may create accounts (INSERT on
-- ledger_account) but not write a projection: without this, an INSERT could make up a balance.
CREATE OR REPLACE FUNCTION ledger_account_refuse_projection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: a new account starts with balance, pending amounts and version 0'
        USING ERRCODE = '23514', CONSTRAINT = 'ledger_account_new_projection_empty';
END $$;
DROP TRIGGER IF EXISTS ledger_account_new_empty ON ledger_account;
CREATE TRIGGER ledger_account_new_empty BEFORE INSERT ON ledger_account FOR EACH ROW
    WHEN (NEW.balance <> 0 OR NEW.debits_pending <> 0 OR NEW.credits_pending <> 0 OR NEW.version <> 0)
    EXECUTE FUNCTION ledger_account_refuse_projection();
-- (migration 0010, review) A shard row is one of its hot parent's: same owner, code, currency and
-- type, hot, numbered below the parent's shard count. The runtime role may create accounts (and the
-- shards of a hot one, as account_get_or_create does); without this it could add a "shard" of
-- another currency that the posting functions would then lock and write for the parent's key.
CREATE OR REPLACE FUNCTION ledger_account_refuse_shard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_account p
                    WHERE p.id = NEW.parent_id AND p.parent_id IS NULL AND p.hot AND NEW.hot
                      AND p.owner = NEW.owner AND p.code = NEW.code AND p.currency = NEW.currency
                      AND p.type = NEW.type AND NEW.shard >= 0 AND NEW.shard < p.shards) THEN
        RAISE EXCEPTION 'ledger: a shard is one of its hot parent''s (same key and type, numbered below its shard count)'
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_account_shard_of_parent';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS ledger_account_shard_valid ON ledger_account;
CREATE TRIGGER ledger_account_shard_valid BEFORE INSERT ON ledger_account FOR EACH ROW
    WHEN (NEW.parent_id IS NOT NULL) EXECUTE FUNCTION ledger_account_refuse_shard();

-- 4. The posting function: one call posts a batch of journals, one round trip.
--    (It and the functions below run as payera_ledger_writer, SECURITY DEFINER: section 6.)
--
-- Accounts a_* are the batch's distinct logical accounts (1-based); lines l_* point at them.
-- Journals j_*: j_line_end[j] is the index of journal j's last line (lines are grouped by journal).
-- Locking: hot accounts first, one free shard each (SKIP LOCKED; waits on one shard only when all
-- are busy), then every other account with SELECT .. ORDER BY id FOR UPDATE: one fixed order.
-- Returns one status per journal; nothing of a failed journal is written. With p_atomic, the
-- first failure of a multi-journal batch aborts the statement (TigerBeetle's linked chain);
-- ledger_post_batch_atomic() turns that into statuses ('linked_event_failed' for the others).
--
-- A batch of several journals is set-based (p_set_based): after the accounts are locked, one
-- query finds the references already stored and the repeats inside the batch; journals are then
-- applied in memory in order, take their ids from the sequence, and are inserted at the end with
-- one INSERT (as entries and projections already were). Should a concurrent transaction commit
-- one of the batch's references (or resolve the same pending journal, or reverse the same
-- journal) between that query and the INSERT, the INSERT skips it, the count differs and the
-- call raises LDG02: ledger_post_batch_atomic() undoes it (a subtransaction) and reruns the batch
-- journal by journal (p_set_based false: each journal inserted in the loop, ON CONFLICT answered
-- at once), which is what a single journal always does.

-- Idempotency (migration 0016): a journal whose reference is taken answers `exists` when it is the
-- same journal as the one holding the reference, else `reference_conflict`. The same journal: the
-- same phase, pending journal resolved and journal reversed, and the same lines as a multiset of
-- (logical account id, amount) (a hot account's entries are on its shards: their parent is the
-- logical account). One definition, ledger_same_posting(); ledger_same_journal() compares a stored
-- journal with it. Every posting function asks them (only a repeated reference gets there): the
-- caller resolves its lines' accounts to logical ids first, a missing one a NULL (no stored entry
-- has it: a conflict). Both are PL/pgSQL (migration 0017), not SQL functions: a SQL function whose
-- body has subqueries is not inlined and was planned again on every call (review r20a: ~480 µs per
-- repeated reference against ~54 µs for the inline code before 0016, ~60 µs as PL/pgSQL; the lead,
-- 5,000 calls on a two-entry journal: 97 µs as SQL, 20-26 µs as PL/pgSQL, which caches the plan).
CREATE OR REPLACE FUNCTION ledger_same_posting(
    a_phase smallint, a_pending bigint, a_reverses bigint, a_account bigint[], a_amount bigint[],
    b_phase smallint, b_pending bigint, b_reverses bigint, b_account bigint[], b_amount bigint[]
) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN a_phase = b_phase AND a_pending IS NOT DISTINCT FROM b_pending
       AND a_reverses IS NOT DISTINCT FROM b_reverses
       AND (SELECT coalesce(array_agg(t.x ORDER BY t.x), '{}')
              FROM (SELECT u.acc::text || ':' || u.amt::text AS x FROM unnest(a_account, a_amount) AS u(acc, amt)) t)
         = (SELECT coalesce(array_agg(t.x ORDER BY t.x), '{}')
              FROM (SELECT u.acc::text || ':' || u.amt::text AS x FROM unnest(b_account, b_amount) AS u(acc, amt)) t);
END
$$;
-- p_journal (stored) against a posting; false when no such journal
CREATE OR REPLACE FUNCTION ledger_same_journal(
    p_journal bigint, p_phase smallint, p_pending bigint, p_reverses bigint, p_account bigint[], p_amount bigint[]
) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((
        SELECT ledger_same_posting(x.phase, x.pending_id, x.reverses_id, l.acc, l.amt,
                                   p_phase, p_pending, p_reverses, p_account, p_amount)
          FROM ledger_journal x,
               LATERAL (SELECT array_agg(coalesce(ac.parent_id, ac.id)) AS acc, array_agg(e.amount) AS amt
                          FROM ledger_entry e JOIN ledger_account ac ON ac.id = e.account_id
                         WHERE e.journal_id = x.id) l
         WHERE x.id = p_journal), false);
END
$$;
DROP FUNCTION IF EXISTS ledger_post_batch(
    text[], text[], text[], text[], boolean[], boolean[], boolean[], boolean[], integer,
    text[], text[], text[], jsonb[], timestamptz[], smallint[], bigint[], bigint[], timestamptz[], integer[],
    integer[], bigint[], boolean);
DROP FUNCTION IF EXISTS ledger_post_batch_atomic(
    text[], text[], text[], text[], boolean[], boolean[], boolean[], boolean[], integer,
    text[], text[], text[], jsonb[], timestamptz[], smallint[], bigint[], bigint[], timestamptz[], integer[],
    integer[], bigint[], boolean);
-- (migration 0015) the form before p_guarded
DROP FUNCTION IF EXISTS ledger_post_batch(
    text[], text[], text[], text[], boolean[], boolean[], boolean[], boolean[], integer,
    text[], text[], text[], jsonb[], timestamptz[], smallint[], bigint[], bigint[], timestamptz[], integer[],
    integer[], bigint[], boolean, boolean);
CREATE OR REPLACE FUNCTION ledger_post_batch(
    a_owner text[], a_code text[], a_currency text[], a_type text[],
    a_dmnec boolean[], a_cmned boolean[], a_hot boolean[], a_create boolean[], a_shards integer,
    j_reference text[], j_kind text[], j_memo text[], j_metadata jsonb[], j_occurred timestamptz[],
    j_phase smallint[], j_reverses bigint[], j_pending bigint[], j_expires timestamptz[], j_line_end integer[],
    l_account integer[], l_amount bigint[],
    p_atomic boolean, p_set_based boolean DEFAULT true, p_guarded boolean DEFAULT false,
    OUT r_status text[], OUT r_journal bigint[]
) LANGUAGE plpgsql
-- Generic plans: every query here is an index lookup; re-planning per call cost more than the work.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    n_acc integer := coalesce(array_length(a_owner, 1), 0);
    n_j integer := coalesce(array_length(j_reference, 1), 0);
    set_based boolean := p_set_based AND n_j > 1;
    acc_id bigint[] := '{}';   -- logical account id
    lk_id bigint[] := '{}';    -- the row we write: the account, or the shard taken for a hot account
    s_hot boolean[] := '{}';
    s_dmnec boolean[] := '{}';
    s_cmned boolean[] := '{}';
    s_frozen boolean[] := '{}';
    s_cur text[];
    s_bal bigint[] := '{}';
    s_dp bigint[] := '{}';
    s_cp bigint[] := '{}';
    s_ver bigint[] := '{}';
    o_bal bigint[] := '{}';
    o_dp bigint[] := '{}';
    o_cp bigint[] := '{}';
    o_ver bigint[] := '{}';
    -- entries to insert at the end
    e_n integer := 0;
    e_journal bigint[] := '{}';
    e_account bigint[] := '{}';
    e_currency text[] := '{}';
    e_amount bigint[] := '{}';
    e_bal bigint[] := '{}';
    e_ver bigint[] := '{}';
    e_pending boolean[] := '{}';
    -- set-based batches: references already stored, repeats inside the batch, journals to insert
    j_first integer[];         -- the first journal of the batch with the same reference
    j_known bigint[];          -- the stored journal with this reference, if any
    j_holder integer[];        -- per first journal: the journal of the batch that created the reference
    c_n integer := 0;
    c_idx integer[] := '{}';   -- batch index of each journal to insert
    c_id bigint[] := '{}';     -- its id (from the sequence)
    b_pending bigint[] := '{}';   -- pending journals resolved by this batch
    b_reverses bigint[] := '{}';  -- journals reversed by this batch
    h integer;
    v_count bigint;
    -- undo log of the current journal
    u_n integer;
    u_acc integer[];
    u_bal bigint[];
    u_dp bigint[];
    u_cp bigint[];
    u_ver bigint[];
    i integer; j integer; jj integer; k integer; a integer; ls integer; le integer := 0;
    e_start integer;
    rec record;
    v_id bigint; v_hot boolean; v_dmnec boolean; v_cmned boolean; v_status text; v_shards integer;
    v_sid bigint;
    amt bigint;
    pend boolean;
    st text;
    jid bigint;
    failed integer := 0;
    p_phase smallint; p_expires timestamptz;
    v_nshards integer[] := '{}';
    -- numeric: a pending journal's lines on one account may sum past bigint (a hand-made one)
    p_cap numeric[];              -- a post: what the pending journal reserved per account of the call
    p_got numeric[];              -- and what the post's lines move there
    v_same boolean;               -- a repeated reference: the same journal (ledger_same_posting)
BEGIN
    -- What the entry trigger would refuse (it skips this function's INSERT, section 7), from the
    -- input alone, before any lock: a zero amount, a journal whose lines do not sum to zero per
    -- currency. (Entries' currencies: checked against the locked rows below; versions and
    -- journals hold by construction.)
    IF array_position(l_amount, 0::bigint) IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: a line of journal % has a zero amount',
            j_reference[(SELECT min(x.j) FROM unnest(j_line_end) WITH ORDINALITY AS x(le, j)
                          WHERE x.le >= array_position(l_amount, 0::bigint))]
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_entry_amount_nonzero';
    END IF;
    SELECT b.j, b.c INTO j, st
      FROM (SELECT e.j, a_currency[l_account[g]] AS c, sum(l_amount[g]) AS s
              FROM (SELECT x.j, x.le, coalesce(lag(x.le) OVER (ORDER BY x.j), 0) AS ls
                      FROM unnest(j_line_end) WITH ORDINALITY AS x(le, j)) e,
                   generate_series(e.ls + 1, e.le) AS g
             GROUP BY 1, 2) b
     WHERE b.s <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: journal % does not balance in %', j_reference[j], st
            USING ERRCODE = '23514', CONSTRAINT = 'ledger_journal_balanced';
    END IF;
    r_status := array_fill(NULL::text, ARRAY[n_j]);
    r_journal := array_fill(NULL::bigint, ARRAY[n_j]);
    -- Resolve the accounts (NULL where missing): a batch in one query; a single journal's few
    -- accounts by one index lookup each (cheaper than the aggregate query for two or three).
    IF n_j = 1 THEN
        FOR i IN 1..n_acc LOOP
            v_id := NULL;
            SELECT id, hot, debits_must_not_exceed_credits, credits_must_not_exceed_debits, status, shards
              INTO v_id, v_hot, v_dmnec, v_cmned, v_status, v_shards
              FROM ledger_account
             WHERE owner = a_owner[i] AND code = a_code[i] AND currency = a_currency[i] AND parent_id IS NULL;
            acc_id[i] := v_id; s_hot[i] := v_hot; s_dmnec[i] := v_dmnec; s_cmned[i] := v_cmned;
            s_frozen[i] := v_status <> 'active'; v_nshards[i] := v_shards;
        END LOOP;
    ELSIF n_acc > 0 THEN
        SELECT array_agg(ac.id ORDER BY u.ord), array_agg(ac.hot ORDER BY u.ord),
               array_agg(ac.debits_must_not_exceed_credits ORDER BY u.ord),
               array_agg(ac.credits_must_not_exceed_debits ORDER BY u.ord),
               array_agg(ac.status <> 'active' ORDER BY u.ord), array_agg(ac.shards ORDER BY u.ord)
          INTO acc_id, s_hot, s_dmnec, s_cmned, s_frozen, v_nshards
          FROM unnest(a_owner, a_code, a_currency) WITH ORDINALITY AS u(o, c, cur, ord)
          LEFT JOIN ledger_account ac
            ON ac.owner = u.o AND ac.code = u.c AND ac.currency = u.cur AND ac.parent_id IS NULL;
    END IF;
    FOR i IN 1..n_acc LOOP
        IF acc_id[i] IS NULL THEN
            -- Create it on first use (chart accounts only).
            IF NOT a_create[i] THEN
                RAISE EXCEPTION 'ledger: no account %/%/%', a_owner[i], a_code[i], a_currency[i]
                    USING ERRCODE = 'P0002', HINT = 'ledger_account_not_found';
            END IF;
            INSERT INTO ledger_account (owner, code, currency, type, debits_must_not_exceed_credits,
                                        credits_must_not_exceed_debits, hot, status, shards)
            VALUES (a_owner[i], a_code[i], a_currency[i], a_type[i], a_dmnec[i], a_cmned[i], a_hot[i], 'active',
                    CASE WHEN a_hot[i] THEN a_shards ELSE 0 END)
            ON CONFLICT DO NOTHING RETURNING id INTO v_id;
            IF v_id IS NOT NULL AND a_hot[i] THEN
                INSERT INTO ledger_account (owner, code, currency, type, hot, status, parent_id, shard, shards)
                SELECT a_owner[i], a_code[i], a_currency[i], a_type[i], true, 'active', v_id, s, 0
                  FROM generate_series(0, a_shards - 1) s;
            END IF;
            SELECT id, hot, debits_must_not_exceed_credits, credits_must_not_exceed_debits, status, shards
              INTO STRICT v_id, v_hot, v_dmnec, v_cmned, v_status, v_shards
              FROM ledger_account
             WHERE owner = a_owner[i] AND code = a_code[i] AND currency = a_currency[i] AND parent_id IS NULL;
            acc_id[i] := v_id; s_hot[i] := v_hot; s_dmnec[i] := v_dmnec; s_cmned[i] := v_cmned;
            s_frozen[i] := v_status <> 'active'; v_nshards[i] := v_shards;
        END IF;
        IF s_hot[i] THEN
            -- Take a free shard without waiting; start from a per-backend place to spread writers.
            v_sid := NULL;
            SELECT id INTO v_sid FROM ledger_account WHERE parent_id = acc_id[i]
             ORDER BY (shard + pg_backend_pid()) % greatest(v_nshards[i], 1)
             LIMIT 1 FOR UPDATE SKIP LOCKED;
            IF v_sid IS NULL THEN
                SELECT id INTO STRICT v_sid FROM ledger_account
                 WHERE parent_id = acc_id[i] AND shard = pg_backend_pid() % greatest(v_nshards[i], 1) FOR UPDATE;
            END IF;
            lk_id[i] := v_sid;
        ELSE
            lk_id[i] := acc_id[i];
        END IF;
    END LOOP;
    -- Lock the other accounts in one fixed order (by id) and load every state (hot shards are
    -- already ours, so they never wait here).
    -- (migration 0012, review 14c) Status and limit flags are read here, from the locked rows, and
    -- replace what the resolution above read before any lock: a freeze (or a change of a flag) that
    -- committed while this call waited for a row is seen. A hot account's status is its shard's (the
    -- freeze sets the parent and every shard, so it either committed before the shard was locked or
    -- waits for this transaction) and its parent's, as ledger_post_one reads them.
    IF n_acc > 0 THEN
        SELECT array_agg(t.balance ORDER BY t.ord), array_agg(t.debits_pending ORDER BY t.ord),
               array_agg(t.credits_pending ORDER BY t.ord), array_agg(t.version ORDER BY t.ord),
               array_agg(t.currency ORDER BY t.ord), array_agg(t.frozen ORDER BY t.ord),
               array_agg(t.dmnec ORDER BY t.ord), array_agg(t.cmned ORDER BY t.ord)
          INTO s_bal, s_dp, s_cp, s_ver, s_cur, s_frozen, s_dmnec, s_cmned
          FROM (SELECT u.ord, ac.balance, ac.debits_pending, ac.credits_pending, ac.version,
                       -- (migration 0015) NULL for a row whose projection is more than 2^61 from zero,
                       -- unless guarded: see the overflow note below
                       CASE WHEN p_guarded OR (ac.balance BETWEEN -2305843009213693952 AND 2305843009213693952
                                               AND ac.debits_pending <= 2305843009213693952
                                               AND ac.credits_pending <= 2305843009213693952
                                               AND ac.version <= 2305843009213693952)
                            THEN ac.currency::text END AS currency,
                       ac.status <> 'active' OR coalesce(p.status <> 'active', false) AS frozen,
                       ac.debits_must_not_exceed_credits AS dmnec, ac.credits_must_not_exceed_debits AS cmned
                  FROM ledger_account ac JOIN unnest(lk_id) WITH ORDINALITY AS u(id, ord) ON ac.id = u.id
                  LEFT JOIN ledger_account p ON p.id = ac.parent_id
                 ORDER BY ac.id FOR UPDATE OF ac) t;
        -- entries take a_currency[a]: the currency of the account found by that key, and of the
        -- shard taken for a hot one (a shard row of another currency is refused here, section 7)
        IF s_cur IS DISTINCT FROM a_currency THEN
            -- (migration 0015) Overflow: a projection or an entry's balance_after past bigint is
            -- refused as 'overflow' (nothing written), never a raw 22003 "bigint out of range". The
            -- arithmetic below is plain bigint (a check per line would cost every posting): a value out
            -- of range raises, and ledger_post_batch_atomic() catches that in its subtransaction and
            -- answers 'overflow'. Unguarded (called directly: one journal, no subtransaction), the
            -- arithmetic must not raise: the caller keeps lines under 2^61 in all (ledger.engine
            -- sends larger ones guarded), so from rows within 2^61 of zero every sum stays within
            -- 2^62 and a limit's sum of two within bigint; a row beyond (NULL currency above) answers
            -- 'retry', nothing posted, and the caller calls ledger_post_batch_atomic().
            IF array_position(s_cur, NULL) IS NOT NULL THEN
                r_status := array_fill('retry'::text, ARRAY[n_j]);
                RETURN;
            END IF;
            RAISE EXCEPTION 'ledger: an account row of this call is not in the currency of its key (%, %)',
                s_cur, a_currency USING ERRCODE = '23503', CONSTRAINT = 'ledger_entry_account_currency';
        END IF;
    END IF;
    o_bal := s_bal; o_dp := s_dp; o_cp := s_cp; o_ver := s_ver;
    IF set_based THEN
        -- Idempotency, set-based, under the account locks: stored references, repeats in the batch.
        SELECT array_agg(t.first ORDER BY t.ord), array_agg(t.jid ORDER BY t.ord)
          INTO j_first, j_known
          FROM (SELECT u.ord, min(u.ord) OVER (PARTITION BY u.ref) AS first, x.id AS jid
                  FROM unnest(j_reference) WITH ORDINALITY AS u(ref, ord)
                  LEFT JOIN ledger_journal x ON x.reference = u.ref) t;
        j_holder := array_fill(NULL::integer, ARRAY[n_j]);
    END IF;

    FOR j IN 1..n_j LOOP
        ls := le + 1;
        le := j_line_end[j];
        st := 'created';
        u_n := 0; u_acc := '{}'; u_bal := '{}'; u_dp := '{}'; u_cp := '{}'; u_ver := '{}';
        e_start := e_n;
        pend := j_phase[j] = 1;
        IF set_based THEN
            h := j_holder[j_first[j]];
            IF h IS NOT NULL OR j_known[j] IS NOT NULL THEN
                st := 'known';  -- answered below: exists or reference_conflict
            END IF;
        END IF;
        -- A post or void must name an open pending journal; a post must come before its expiry.
        -- (migration 0014) A pending journal resolved already answers that first (as TigerBeetle's
        -- pending_transfer_already_posted/voided come before its expiry and balance checks): before,
        -- only the INSERT's unique index found it, after the expiry, frozen and limit checks, so a
        -- second post was refused as `pending_expired` or `account_frozen`. 'duplicate' is answered
        -- below: `exists` for a repeat of the resolution's own reference, else pending_already_resolved.
        IF st = 'created' AND j_pending[j] IS NOT NULL THEN
            SELECT phase, expires_at INTO p_phase, p_expires FROM ledger_journal WHERE id = j_pending[j];
            IF NOT FOUND OR p_phase <> 1 THEN
                st := 'not_pending';
            ELSIF EXISTS (SELECT 1 FROM ledger_journal WHERE pending_id = j_pending[j]) THEN
                st := 'duplicate';
            ELSIF j_phase[j] = 2 AND p_expires IS NOT NULL AND p_expires <= clock_timestamp() THEN
                st := 'pending_expired';
            ELSE
                -- Release the reservation (not tracked on hot accounts).
                IF j_phase[j] = 2 THEN
                    p_cap := array_fill(0::numeric, ARRAY[n_acc]); p_got := p_cap;
                END IF;
                FOR rec IN SELECT e.account_id, e.amount, coalesce(ac.parent_id, ac.id) AS logical_id
                             FROM ledger_entry e JOIN ledger_account ac ON ac.id = e.account_id
                            WHERE e.journal_id = j_pending[j] LOOP
                    IF j_phase[j] = 2 THEN  -- reserved per logical account (a hot account's shards together)
                        a := array_position(acc_id, rec.logical_id);
                        IF a IS NOT NULL THEN p_cap[a] := p_cap[a] + rec.amount; END IF;
                    END IF;
                    a := NULL;
                    FOR k IN 1..n_acc LOOP
                        IF lk_id[k] = rec.account_id THEN a := k; EXIT; END IF;
                    END LOOP;
                    IF a IS NULL THEN
                        -- only a hot shard may be missing from the batch: pending amounts are not
                        -- tracked there; anything else would leave a projection wrong
                        IF NOT EXISTS (SELECT 1 FROM ledger_account WHERE id = rec.account_id AND hot) THEN
                            RAISE EXCEPTION 'ledger: account % of pending journal % is not in the call',
                                rec.account_id, j_pending[j] USING ERRCODE = 'P0001';
                        END IF;
                        CONTINUE;
                    END IF;
                    IF s_hot[a] THEN
                        CONTINUE;  -- a hot shard: pending amounts are not tracked there
                    END IF;
                    u_n := u_n + 1; u_acc[u_n] := a;
                    u_bal[u_n] := s_bal[a]; u_dp[u_n] := s_dp[a]; u_cp[u_n] := s_cp[a]; u_ver[u_n] := s_ver[a];
                    IF rec.amount > 0 THEN s_dp[a] := s_dp[a] - rec.amount;
                    ELSE s_cp[a] := s_cp[a] + rec.amount; END IF;
                END LOOP;
                IF j_phase[j] = 2 THEN
                    -- No more than reserved (TigerBeetle's exceeds_pending_transfer_amount): each
                    -- account the post moves was reserved on, in the same direction, at least as much.
                    FOR k IN ls..le LOOP
                        p_got[l_account[k]] := p_got[l_account[k]] + l_amount[k];
                    END LOOP;
                    FOR k IN ls..le LOOP
                        a := l_account[k];
                        IF p_cap[a] = 0 OR sign(p_got[a]) <> sign(p_cap[a]) OR abs(p_got[a]) > abs(p_cap[a]) THEN
                            st := 'exceeds_pending_amount';
                            EXIT;
                        END IF;
                    END LOOP;
                END IF;
            END IF;
        END IF;
        IF st = 'created' THEN
            FOR k IN ls..le LOOP
                a := l_account[k]; amt := l_amount[k];
                IF s_frozen[a] THEN st := 'account_frozen'; EXIT; END IF;
                u_n := u_n + 1; u_acc[u_n] := a;
                u_bal[u_n] := s_bal[a]; u_dp[u_n] := s_dp[a]; u_cp[u_n] := s_cp[a]; u_ver[u_n] := s_ver[a];
                IF pend THEN
                    IF NOT s_hot[a] THEN
                        IF amt > 0 THEN s_dp[a] := s_dp[a] + amt; ELSE s_cp[a] := s_cp[a] - amt; END IF;
                    END IF;
                ELSE
                    s_bal[a] := s_bal[a] + amt;
                END IF;
                s_ver[a] := s_ver[a] + 1;
                e_n := e_n + 1;
                e_journal[e_n] := j; e_account[e_n] := lk_id[a]; e_currency[e_n] := a_currency[a];
                e_amount[e_n] := amt; e_bal[e_n] := s_bal[a]; e_ver[e_n] := s_ver[a]; e_pending[e_n] := pend;
            END LOOP;
        END IF;
        IF st = 'created' THEN
            FOR k IN 1..u_n LOOP
                a := u_acc[k];
                IF s_dmnec[a] AND s_bal[a] + s_dp[a] > 0 THEN st := 'exceeds_credits'; EXIT; END IF;
                IF s_cmned[a] AND s_cp[a] - s_bal[a] > 0 THEN st := 'exceeds_debits'; EXIT; END IF;
            END LOOP;
        END IF;
        jid := NULL;
        IF st = 'created' AND set_based THEN
            -- what the unique indexes would refuse: a second resolution or reversal. Asked only of a
            -- journal that names one (the outer IF): PL/pgSQL runs a condition holding a subquery as a
            -- query, executor start-up and all, on every evaluation, even when the subquery is never
            -- reached (session 7: 13 % of a batch's backend instructions, once per journal).
            IF j_pending[j] IS NOT NULL OR j_reverses[j] IS NOT NULL THEN
                IF (j_pending[j] IS NOT NULL
                    AND (j_pending[j] = ANY (b_pending)
                         OR EXISTS (SELECT 1 FROM ledger_journal WHERE pending_id = j_pending[j])))
                   OR (j_reverses[j] IS NOT NULL
                       AND (j_reverses[j] = ANY (b_reverses)
                            OR EXISTS (SELECT 1 FROM ledger_journal WHERE reverses_id = j_reverses[j]))) THEN
                    st := 'duplicate';
                END IF;
            END IF;
            IF st = 'created' THEN
                jid := nextval('ledger_journal_id_seq');
                c_n := c_n + 1; c_idx[c_n] := j; c_id[c_n] := jid;
                j_holder[j_first[j]] := j;
                IF j_pending[j] IS NOT NULL THEN b_pending := b_pending || j_pending[j]; END IF;
                IF j_reverses[j] IS NOT NULL THEN b_reverses := b_reverses || j_reverses[j]; END IF;
            END IF;
        ELSIF st = 'created' THEN
            -- created_at after the locks (see ledger_post_one)
            INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, reverses_id,
                                        pending_id, expires_at, created_at)
            VALUES (j_reference[j], j_kind[j], j_phase[j], j_memo[j], j_metadata[j], j_occurred[j],
                    j_reverses[j], j_pending[j], j_expires[j], clock_timestamp())
            ON CONFLICT DO NOTHING RETURNING id INTO jid;
            IF jid IS NULL THEN
                st := 'duplicate';
            END IF;
        END IF;
        IF jid IS NOT NULL THEN
            r_journal[j] := jid;
            FOR k IN e_start + 1..e_n LOOP
                e_journal[k] := jid;
            END LOOP;
        END IF;
        IF st <> 'created' THEN
            -- Idempotency first (as TigerBeetle): a known reference answers exists or conflict,
            -- whatever the balances say now.
            IF NOT set_based THEN
                SELECT id INTO jid FROM ledger_journal WHERE reference = j_reference[j];
                jj := NULL;
                IF jid IS NOT NULL THEN
                    jj := array_position(r_journal, jid);
                    IF NOT (jj < j AND r_status[jj] = 'created') THEN
                        jj := NULL;
                    END IF;
                END IF;
            ELSIF st = 'known' THEN
                jj := h;
                jid := CASE WHEN h IS NOT NULL THEN r_journal[h] ELSE j_known[j] END;
            ELSE
                jid := NULL;  -- the reference is neither stored nor earlier in the batch
            END IF;
            IF jid IS NULL THEN
                IF st = 'duplicate' THEN
                    st := CASE WHEN j_pending[j] IS NOT NULL THEN 'pending_already_resolved'
                               ELSE 'already_reversed' END;
                END IF;
            ELSE
                r_journal[j] := jid;
                -- (migration 0016) the same journal? (ledger_same_posting)
                IF jj IS NOT NULL THEN
                    -- the first journal with this reference is earlier in this batch (its entries
                    -- are not written yet): compare with its input lines
                    k := CASE WHEN jj = 1 THEN 1 ELSE j_line_end[jj - 1] + 1 END;
                    v_same := ledger_same_posting(
                        j_phase[jj], j_pending[jj], j_reverses[jj],
                        ARRAY(SELECT acc_id[x.a] FROM unnest(l_account[k:j_line_end[jj]]) WITH ORDINALITY AS x(a, o)
                               ORDER BY x.o),
                        l_amount[k:j_line_end[jj]],
                        j_phase[j], j_pending[j], j_reverses[j],
                        ARRAY(SELECT acc_id[x.a] FROM unnest(l_account[ls:le]) WITH ORDINALITY AS x(a, o) ORDER BY x.o),
                        l_amount[ls:le]);
                ELSE
                    v_same := ledger_same_journal(
                        jid, j_phase[j], j_pending[j], j_reverses[j],
                        ARRAY(SELECT acc_id[x.a] FROM unnest(l_account[ls:le]) WITH ORDINALITY AS x(a, o) ORDER BY x.o),
                        l_amount[ls:le]);
                END IF;
                st := CASE WHEN v_same THEN 'exists' ELSE 'reference_conflict' END;
            END IF;
        END IF;
        r_status[j] := st;
        IF st <> 'created' THEN
            -- Undo this journal's effects on the state, newest first; drop its entries.
            FOR k IN REVERSE u_n..1 LOOP
                a := u_acc[k];
                s_bal[a] := u_bal[k]; s_dp[a] := u_dp[k]; s_cp[a] := u_cp[k]; s_ver[a] := u_ver[k];
            END LOOP;
            e_n := e_start;
            IF st <> 'exists' AND p_atomic AND failed = 0 THEN
                failed := j;
                EXIT;
            END IF;
        END IF;
    END LOOP;
    IF failed > 0 AND n_j > 1 THEN
        -- An atomic batch failed: abort the statement (nothing of it is written). Callers inside a
        -- transaction use ledger_post_batch_atomic(), which catches this in a subtransaction.
        RAISE EXCEPTION 'ledger: atomic batch refused at journal %', failed
            USING ERRCODE = 'LDG01', DETAIL = r_status[failed], HINT = failed::text;
    END IF;

    IF c_n > 0 THEN
        -- created_at after the locks (see ledger_post_one), one value for the whole batch (its
        -- journals follow each other on an account: a per-row clock in join order might not)
        INSERT INTO ledger_journal (id, reference, kind, phase, memo, metadata, occurred_at, reverses_id,
                                    pending_id, expires_at, created_at)
        SELECT c.id, u.ref, u.kind, u.phase, u.memo, u.md, u.occ, u.rev, u.pend, u.exp, (SELECT clock_timestamp())
          FROM unnest(c_idx, c_id) AS c(j, id)
          JOIN unnest(j_reference, j_kind, j_phase, j_memo, j_metadata, j_occurred, j_reverses, j_pending, j_expires)
               WITH ORDINALITY AS u(ref, kind, phase, memo, md, occ, rev, pend, exp, ord) ON u.ord = c.j
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        IF v_count <> c_n THEN
            RAISE EXCEPTION 'ledger: a concurrent posting took a reference or resolution of this batch'
                USING ERRCODE = 'LDG02';
        END IF;
    END IF;
    IF e_n > 0 THEN
        INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)
        SELECT * FROM unnest(e_journal[1:e_n], e_account[1:e_n], e_currency[1:e_n], e_amount[1:e_n],
                             e_bal[1:e_n], e_ver[1:e_n], e_pending[1:e_n]);
    END IF;
    UPDATE ledger_account ac
       SET balance = u.bal, debits_pending = u.dp, credits_pending = u.cp, version = u.ver
      FROM unnest(lk_id, s_bal, s_dp, s_cp, s_ver, o_ver, o_dp, o_cp)
           AS u(id, bal, dp, cp, ver, over, odp, ocp)
     WHERE ac.id = u.id AND (u.ver <> u.over OR u.dp <> u.odp OR u.cp <> u.ocp);
END $$;

-- 5. One journal, the lean path: ledger_post_one(). Used by journal_post, journal_reverse and
--    pending_create (a journal that resolves no pending one); ledger_post_batch() does the rest.
--
-- Accounts come by key and, when the caller has seen them before, by id and hot flag (an account's
-- identity never changes and accounts are never deleted: the guard triggers above), so a known
-- account costs no lookup: its row is locked by id (all rows in one statement, in id order) and its
-- key is checked on the locked row. Status, limits and the projection are read under the lock. An
-- unknown key is looked up here (r_account/r_hot return the ids for the caller's cache; r_account is
-- NULL on a created posting whose keys all came with an id: the caller has them). 'retry'
-- (nothing written): an account is missing (to be created) or a cached id does not name its key;
-- the caller then takes ledger_post_batch(). Otherwise the same statuses as ledger_post_batch().
-- Statements: the lock, one INSERT of the journal, one of its entries, one UPDATE of the projections.
DROP FUNCTION IF EXISTS ledger_post_one(
    text[], text[], text[], bigint[], boolean[], integer[], bigint[],
    text, text, text, jsonb, timestamptz, smallint, bigint, timestamptz);
CREATE OR REPLACE FUNCTION ledger_post_one(
    a_owner text[], a_code text[], a_currency text[], a_id bigint[], a_hot boolean[],
    l_account integer[], l_amount bigint[],
    p_reference text, p_kind text, p_memo text, p_metadata jsonb, p_occurred timestamptz,
    p_phase smallint, p_reverses bigint, p_expires timestamptz,
    OUT r_status text, OUT r_journal bigint, OUT r_account bigint[], OUT r_hot boolean[]
) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
-- Plain index scans, never bitmap scans: account rows are updated all the time, their indexes carry
-- entries of dead row versions, and only an index scan marks those dead (the next scan skips
-- them). A bitmap scan visited every dead version's heap page on every call: 273 pages to find
-- the 16 shards of a hot account in the bench, 17 to lock two merchant accounts.
SET enable_bitmapscan = off
-- Nor sequential scans (session 7): every query here reads a few rows by id or key, but while
-- ledger_account is small (under ~40 pages: a thousand accounts at fillfactor 50, as in the bench or
-- a young platform) the generic plan of the lock (`id = ANY (lk)`, estimated at 10 rows) chose a
-- sequential scan of the whole table: 3.6x the backend instructions of the posting (callgrind).
SET enable_seqscan = off
AS $$
DECLARE
    n integer;
    lk bigint[];
    pend boolean := p_phase = 1;
    i integer;
    v_id bigint; v_hot boolean; v_sid bigint; v_status text;
    v_rows integer;
    -- (no initial values: each is an expression to prepare on every call; an element assigned to a
    -- NULL array creates it, and a NULL flag is false in an IF)
    v_frozen boolean; v_limited boolean;
    v_sum bigint; v_multi boolean; v_cur text;
    jid bigint;
    rec record;
    k integer; m integer;
    s_cur text[]; s_dmnec boolean[]; s_cmned boolean[];
    s_bal bigint[]; s_dp bigint[]; s_cp bigint[]; s_ver bigint[];
    e_bal bigint[]; e_ver bigint[];
BEGIN
    -- (session 8) The known path evaluates as few PL/pgSQL expressions as it can: PL/pgSQL prepares
    -- each expression a call reaches once per transaction, i.e. on every posting (~2,500
    -- instructions each, plus catalog lookups): 44 of them were ~8 % of a posting's instructions.
    r_hot := a_hot;
    r_status := 'created';
    IF array_position(a_id, NULL) IS NULL AND array_position(a_hot, true) IS NULL THEN
        lk := a_id;  -- every account known to the caller, none hot: lock them as they are
    ELSE
        n := array_length(a_owner, 1);
        r_account := a_id;
        lk := a_id;
        -- unknown keys first, so that an account still to be created answers before any lock
        FOR i IN 1..n LOOP
            IF r_account[i] IS NULL THEN
                SELECT id, hot INTO v_id, v_hot FROM ledger_account
                 WHERE owner = a_owner[i] AND code = a_code[i] AND currency = a_currency[i] AND parent_id IS NULL;
                IF v_id IS NULL THEN
                    r_status := 'retry';  -- to be created: the caller takes ledger_post_batch()
                    RETURN;
                END IF;
                r_account[i] := v_id; r_hot[i] := v_hot;
            END IF;
        END LOOP;
        FOR i IN 1..n LOOP
            IF r_hot[i] THEN
                -- a free shard without waiting (the parent's key verified by the same query)
                v_sid := NULL;
                SELECT s.id, p.status INTO v_sid, v_status
                  FROM ledger_account p JOIN ledger_account s ON s.parent_id = p.id AND s.currency = p.currency
                 WHERE p.id = r_account[i] AND p.owner = a_owner[i] AND p.code = a_code[i]
                   AND p.currency = a_currency[i] AND p.parent_id IS NULL AND p.hot
                 ORDER BY (s.shard + pg_backend_pid()) % greatest(p.shards, 1)
                 LIMIT 1 FOR UPDATE OF s SKIP LOCKED;
                IF v_sid IS NULL THEN
                    SELECT s.id, p.status INTO v_sid, v_status
                      FROM ledger_account p JOIN ledger_account s
                        ON s.parent_id = p.id AND s.currency = p.currency
                       AND s.shard = pg_backend_pid() % greatest(p.shards, 1)
                     WHERE p.id = r_account[i] AND p.owner = a_owner[i] AND p.code = a_code[i]
                       AND p.currency = a_currency[i] AND p.parent_id IS NULL AND p.hot
                       FOR UPDATE OF s;
                    IF v_sid IS NULL THEN
                        r_status := 'retry';  -- the caller's cache is stale
                        RETURN;
                    END IF;
                END IF;
                IF v_status <> 'active' THEN
                    r_status := 'account_frozen';
                END IF;
                lk[i] := v_sid;
            ELSE
                lk[i] := r_account[i];
            END IF;
        END LOOP;
    END IF;
    -- Lock the rows in id order; check the keys, status and limits under the locks. The limit flags
    -- and pending amounts are kept only for a pending posting or a limited account (a NULL flag is
    -- no limit); an unlimited posting skips the limit loop.
    -- (migration 0015) Overflow: the arithmetic below is plain bigint, unchecked (a check per line
    -- would cost every posting). The caller sends here only journals whose lines move under 2^61 in
    -- all (ledger.engine), so from rows within 2^61 of zero no sum leaves bigint (each stays within
    -- 2^62, a limit's sum of two within 2^63; pending amounts are never negative, CHECK
    -- ledger_account_pending_gte_0, and a version only grows). A row beyond is read with a NULL
    -- currency, which the key check below answers with 'retry' (nothing written): the caller then
    -- posts through ledger_post_batch_atomic(), which answers 'overflow' when a value would pass
    -- bigint. No PL/pgSQL expression is added: the lock's SQL computes it (+1.1 % of a posting's
    -- backend instructions, callgrind, session 19; the same test in its WHERE clause: +1.2 %).
    FOR rec IN SELECT ac.id, ac.owner, ac.code,
                      CASE WHEN ac.balance BETWEEN -2305843009213693952 AND 2305843009213693952
                            AND ac.debits_pending <= 2305843009213693952 AND ac.credits_pending <= 2305843009213693952
                            AND ac.version <= 2305843009213693952
                           THEN ac.currency END AS currency,
                      ac.parent_id, ac.hot, ac.status,
                      ac.debits_must_not_exceed_credits AS dmnec, ac.credits_must_not_exceed_debits AS cmned,
                      ac.balance, ac.debits_pending, ac.credits_pending, ac.version
                 FROM ledger_account ac WHERE ac.id = ANY (lk) ORDER BY ac.id FOR UPDATE LOOP
        i := array_position(lk, rec.id);
        -- (review) every row against its key, NULLs included: a hot key's shard in the key's currency
        -- (its parent verified by the shard query), any other the account itself, not hot (a NULL
        -- or missing hot flag from the caller counts as not hot, so it is checked, never skipped);
        -- a NULL currency is also a row near the ends of bigint (above)
        IF rec.currency IS DISTINCT FROM a_currency[i]
           OR (r_hot[i] IS NOT TRUE AND (rec.owner IS DISTINCT FROM a_owner[i] OR rec.code IS DISTINCT FROM a_code[i]
                                         OR rec.parent_id IS NOT NULL OR rec.hot)) THEN
            r_status := 'retry';  -- a cached id names another account
            RETURN;
        END IF;
        IF rec.status <> 'active' THEN v_frozen := true; END IF;
        s_cur[i] := rec.currency; s_bal[i] := rec.balance; s_ver[i] := rec.version;
        IF pend OR rec.dmnec OR rec.cmned THEN
            s_dmnec[i] := rec.dmnec; s_cmned[i] := rec.cmned;
            s_dp[i] := rec.debits_pending; s_cp[i] := rec.credits_pending;
            IF rec.dmnec OR rec.cmned THEN v_limited := true; END IF;
        END IF;
    END LOOP;
    -- (an element assigned to a NULL array creates it with that subscript as its lower bound: a
    -- missing first account leaves it shorter, a missing middle one a NULL)
    IF array_length(s_ver, 1) IS DISTINCT FROM array_length(a_owner, 1) OR array_position(s_ver, NULL) IS NOT NULL THEN
        r_status := 'retry';  -- a cached id names no account
        RETURN;
    END IF;
    m := array_length(l_account, 1);
    e_bal := l_amount; e_ver := l_amount;  -- sized like the lines
    FOR k IN 1..m LOOP
        i := l_account[k];
        IF pend THEN
            IF r_hot[i] IS NOT TRUE THEN
                IF l_amount[k] > 0 THEN s_dp[i] := s_dp[i] + l_amount[k];
                ELSE s_cp[i] := s_cp[i] - l_amount[k]; END IF;
            END IF;
        ELSE
            s_bal[i] := s_bal[i] + l_amount[k];
        END IF;
        s_ver[i] := s_ver[i] + 1;
        e_bal[k] := s_bal[i]; e_ver[k] := s_ver[i];
        -- balanced by construction (section 7): the sum in the first line's currency; another
        -- currency takes the general check below
        IF s_cur[i] = s_cur[l_account[1]] THEN v_sum := coalesce(v_sum, 0) + l_amount[k]; ELSE v_multi := true; END IF;
    END LOOP;
    -- What the entry trigger would refuse (it skips this function's INSERT, section 7): a zero amount,
    -- lines that do not sum to zero per currency. An entry's currency is its locked row's (s_cur),
    -- its version that row's next, its journal the one just inserted: those hold by construction.
    IF v_sum <> 0 OR v_multi OR array_position(l_amount, 0::bigint) IS NOT NULL THEN
        IF array_position(l_amount, 0::bigint) IS NOT NULL THEN
            RAISE EXCEPTION 'ledger: a line of journal % has a zero amount', p_reference
                USING ERRCODE = '23514', CONSTRAINT = 'ledger_entry_amount_nonzero';
        END IF;
        SELECT t.c INTO v_cur
          FROM (SELECT s_cur[u.i] AS c, sum(u.amt) AS s FROM unnest(l_account, l_amount) AS u(i, amt) GROUP BY 1) t
         WHERE t.s <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger: journal % does not balance in %', p_reference, v_cur
                USING ERRCODE = '23514', CONSTRAINT = 'ledger_journal_balanced';
        END IF;
    END IF;
    IF (v_frozen OR v_limited) AND r_status = 'created' THEN  -- (one expression on the usual path)
        IF v_frozen THEN
            r_status := 'account_frozen';
        ELSE
            FOR k IN 1..m LOOP
                i := l_account[k];
                IF s_dmnec[i] AND s_bal[i] + s_dp[i] > 0 THEN r_status := 'exceeds_credits'; EXIT; END IF;
                IF s_cmned[i] AND s_cp[i] - s_bal[i] > 0 THEN r_status := 'exceeds_debits'; EXIT; END IF;
            END LOOP;
        END IF;
    END IF;
    IF r_status = 'created' THEN
        -- created_at: the clock now, after the account locks (not the statement's start, before
        -- them): on every account the journals' created_at follow its versions, so
        -- account_balance_at() is right under contention (#4 audit finding 8)
        INSERT INTO ledger_journal (reference, kind, phase, memo, metadata, occurred_at, reverses_id, expires_at,
                                    created_at)
        VALUES (p_reference, p_kind, p_phase, p_memo, p_metadata, p_occurred, p_reverses, p_expires, clock_timestamp())
        ON CONFLICT DO NOTHING RETURNING id INTO r_journal;
        IF r_journal IS NOT NULL THEN
            INSERT INTO ledger_entry (journal_id, account_id, currency, amount, balance_after, version, is_pending)
            -- one array unnested, the others subscripted: a function scan over five arrays sets up
            -- and fills five functions' results per statement (-4 % of a posting's instructions)
            SELECT r_journal, lk[u.i], s_cur[u.i], l_amount[u.k], e_bal[u.k], e_ver[u.k], pend
              FROM unnest(l_account) WITH ORDINALITY AS u(i, k);
            IF pend THEN
                UPDATE ledger_account ac
                   SET debits_pending = s_dp[u.k], credits_pending = s_cp[u.k], version = s_ver[u.k]
                  FROM unnest(lk) WITH ORDINALITY AS u(id, k)
                 WHERE ac.id = u.id;
            ELSE  -- the pending amounts do not change (and were not read for an unlimited account)
                UPDATE ledger_account ac
                   SET balance = s_bal[u.k], version = s_ver[u.k]
                  FROM unnest(lk) WITH ORDINALITY AS u(id, k)
                 WHERE ac.id = u.id;
            END IF;
            RETURN;
        END IF;
        r_status := 'duplicate';
    END IF;
    r_account := coalesce(r_account, a_id);  -- (the known path leaves it unset: the caller reads it only for unknown keys)
    -- Refused: idempotency first (as TigerBeetle): a known reference answers exists or conflict.
    SELECT id INTO jid FROM ledger_journal WHERE reference = p_reference;
    IF jid IS NULL THEN
        IF r_status = 'duplicate' THEN
            r_status := 'already_reversed';
        END IF;
        RETURN;
    END IF;
    r_journal := jid;
    -- (migration 0016) the same journal? (ledger_same_posting; this function resolves no pending one)
    IF ledger_same_journal(jid, p_phase, NULL, p_reverses,
                           ARRAY(SELECT r_account[x.a] FROM unnest(l_account) WITH ORDINALITY AS x(a, o) ORDER BY x.o),
                           l_amount) THEN
        r_status := 'exists';
    ELSE
        r_status := 'reference_conflict';
    END IF;
END $$;

-- Batches of several journals, inside or outside the caller's transaction. The exception blocks
-- are subtransactions (one at a time): an atomic batch refused (LDG01) is undone and answered with
-- statuses, so the caller's transaction stays usable; a set-based batch that lost a race for a
-- reference (LDG02) is undone and rerun journal by journal. (Single journals never need it.)
CREATE OR REPLACE FUNCTION ledger_post_batch_atomic(
    a_owner text[], a_code text[], a_currency text[], a_type text[],
    a_dmnec boolean[], a_cmned boolean[], a_hot boolean[], a_create boolean[], a_shards integer,
    j_reference text[], j_kind text[], j_memo text[], j_metadata jsonb[], j_occurred timestamptz[],
    j_phase smallint[], j_reverses bigint[], j_pending bigint[], j_expires timestamptz[], j_line_end integer[],
    l_account integer[], l_amount bigint[],
    p_atomic boolean,
    OUT r_status text[], OUT r_journal bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_detail text;
    v_hint text;
    n integer := coalesce(array_length(j_reference, 1), 0);
    v_set_based boolean := true;
    j integer; ls integer; le integer; st text; jid bigint;
BEGIN
    LOOP
        BEGIN
            SELECT b.r_status, b.r_journal INTO r_status, r_journal
              FROM ledger_post_batch(a_owner, a_code, a_currency, a_type, a_dmnec, a_cmned, a_hot, a_create,
                                     a_shards, j_reference, j_kind, j_memo, j_metadata, j_occurred, j_phase,
                                     j_reverses, j_pending, j_expires, j_line_end, l_account, l_amount, p_atomic,
                                     v_set_based, true) b;
            RETURN;
        EXCEPTION
            WHEN SQLSTATE 'LDG01' THEN
                GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
                r_status := array_fill('linked_event_failed'::text, ARRAY[n]);
                r_status[v_hint::integer] := v_detail;
                r_journal := array_fill(NULL::bigint, ARRAY[n]);
                RETURN;
            WHEN SQLSTATE 'LDG02' THEN
                IF NOT v_set_based THEN
                    RAISE;  -- cannot happen: the journal-by-journal path never raises it
                END IF;
                v_set_based := false;  -- lost a race for a reference: rerun journal by journal
            WHEN numeric_value_out_of_range THEN
                -- (migration 0015) a value would pass bigint (a balance, pending amount, version: the
                -- note in ledger_post_batch), somewhere in the batch, and the call is undone. Each
                -- journal again, in order, in its own subtransaction: the one that raises answers
                -- 'overflow' (nothing of it written), unless its reference is stored (idempotency
                -- first: exists or reference_conflict); an atomic batch stops at its first refusal
                -- and is undone whole (LDG01), the others of a non-atomic one stand.
                r_status := array_fill(NULL::text, ARRAY[n]);
                r_journal := array_fill(NULL::bigint, ARRAY[n]);
                BEGIN
                    le := 0;
                    FOR j IN 1..n LOOP
                        ls := le + 1;
                        le := j_line_end[j];
                        BEGIN
                            SELECT b.r_status[1], b.r_journal[1] INTO st, jid
                              FROM ledger_post_batch(a_owner, a_code, a_currency, a_type, a_dmnec, a_cmned, a_hot,
                                                     a_create, a_shards, ARRAY[j_reference[j]], ARRAY[j_kind[j]],
                                                     ARRAY[j_memo[j]], ARRAY[j_metadata[j]], ARRAY[j_occurred[j]],
                                                     ARRAY[j_phase[j]], ARRAY[j_reverses[j]], ARRAY[j_pending[j]],
                                                     ARRAY[j_expires[j]], ARRAY[le - ls + 1], l_account[ls:le],
                                                     l_amount[ls:le], p_atomic, false, true) b;
                        EXCEPTION WHEN numeric_value_out_of_range THEN
                            st := 'overflow';
                            SELECT id INTO jid FROM ledger_journal WHERE reference = j_reference[j];
                            IF jid IS NOT NULL THEN
                                -- (migration 0016) the same journal? the lines' accounts by key (the
                                -- call that created them is undone): a missing one is NULL, a conflict
                                IF ledger_same_journal(
                                       jid, j_phase[j], j_pending[j], j_reverses[j],
                                       ARRAY(SELECT (SELECT ac.id FROM ledger_account ac
                                                      WHERE ac.owner = a_owner[x.a] AND ac.code = a_code[x.a]
                                                        AND ac.currency = a_currency[x.a] AND ac.parent_id IS NULL)
                                               FROM unnest(l_account[ls:le]) WITH ORDINALITY AS x(a, o) ORDER BY x.o),
                                       l_amount[ls:le]) THEN
                                    st := 'exists';
                                ELSE
                                    st := 'reference_conflict';
                                END IF;
                            END IF;
                        END;
                        r_status[j] := st;
                        r_journal[j] := jid;
                        IF p_atomic AND n > 1 AND st NOT IN ('created', 'exists') THEN
                            RAISE EXCEPTION 'ledger: atomic batch refused at journal %', j
                                USING ERRCODE = 'LDG01', DETAIL = st, HINT = j::text;
                        END IF;
                    END LOOP;
                EXCEPTION WHEN SQLSTATE 'LDG01' THEN
                    GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
                    r_status := array_fill('linked_event_failed'::text, ARRAY[n]);
                    r_status[v_hint::integer] := v_detail;
                    r_journal := array_fill(NULL::bigint, ARRAY[n]);
                END;
                RETURN;
        END;
    END LOOP;
END $$;

-- 6. The posting functions run as their own role (docs/decisions/database-roles.md, "Session 11").
--    ledger_post_one(), ledger_post_batch() and ledger_post_batch_atomic() are SECURITY DEFINER,
--    owned by payera_ledger_writer, a NOLOGIN role that nobody logs in as and the runtime role is
--    no member of; each pins its search_path (this schema, then pg_temp: a caller's objects never
--    shadow a table the function names). The writer may read and append journals and entries,
--    create accounts and write their projections; the runtime role gets EXECUTE on the functions
--    and SELECT on the ledger's tables (manage.py db_grant_app_role), so a journal, an entry or a
--    projection change only comes from a posting function: a balanced but made-up journal or a
--    projection UPDATE is refused by the privileges, not found afterwards by ledger_verify.
--    EXECUTE is revoked from PUBLIC: only roles given it call them.
--    The role is cluster-wide: created here when the migrating role may (a superuser, as in CI, or
--    CREATEROLE), else it must exist already (scripts/postgres-init, or by hand: the runbook);
--    several databases of one cluster (xdist's test databases) share it. The migrating role must
--    be a member of it (to replace the functions later: CREATE OR REPLACE keeps their owner) unless
--    it is a superuser. Idempotent, run by every reload of the functions (this section follows them).
DO $writer$
DECLARE
    writer CONSTANT name := 'payera_ledger_writer';
    schema name := current_schema();
    me_super boolean;
    me_createrole boolean;
    w record;
    fn record;
    seq text;
    lent_create boolean := false;
BEGIN
    SELECT rolsuper, rolcreaterole INTO me_super, me_createrole FROM pg_roles WHERE rolname = current_user;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = writer) THEN
        IF NOT (me_super OR me_createrole) THEN
            RAISE EXCEPTION 'ledger: the role payera_ledger_writer does not exist and % may not create it', current_user
                USING ERRCODE = '42501',
                      HINT = format('As a superuser: CREATE ROLE payera_ledger_writer NOLOGIN; GRANT payera_ledger_writer TO %I;'
                                    ' then migrate again (docs/runbooks/database-roles.md)', current_user);
        END IF;
        BEGIN
            CREATE ROLE payera_ledger_writer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of the cluster migrating at the same moment made it
        END;
    END IF;
    SELECT rolsuper, rolcanlogin, rolcreaterole, rolbypassrls INTO w FROM pg_roles WHERE rolname = writer;
    IF w.rolsuper OR w.rolcanlogin OR w.rolcreaterole OR w.rolbypassrls THEN
        RAISE EXCEPTION 'ledger: the role payera_ledger_writer must be NOLOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS'
            USING ERRCODE = '42501',
                  HINT = 'ALTER ROLE payera_ledger_writer NOLOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS;';
    END IF;
    IF NOT me_super AND NOT pg_has_role(current_user, writer, 'MEMBER') THEN
        IF NOT me_createrole THEN
            RAISE EXCEPTION 'ledger: % is no member of payera_ledger_writer', current_user
                USING ERRCODE = '42501',
                      HINT = format('As a superuser: GRANT payera_ledger_writer TO %I; then migrate again', current_user);
        END IF;
        EXECUTE format('GRANT %I TO %I', writer, current_user);
    END IF;
    -- What the functions do, nothing more (no UPDATE/DELETE/TRUNCATE of journals or entries).
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema, writer);
    EXECUTE format('GRANT SELECT, INSERT ON ledger_journal, ledger_entry TO %I', writer);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ledger_account TO %I', writer);
    IF to_regclass('ledger_journal_check') IS NOT NULL THEN  -- (the entry trigger's rows: migration 0005 on)
        EXECUTE format('GRANT SELECT, INSERT, DELETE ON ledger_journal_check TO %I', writer);
    END IF;
    FOREACH seq IN ARRAY ARRAY[pg_get_serial_sequence('ledger_journal', 'id'), pg_get_serial_sequence('ledger_entry', 'id'),
                               pg_get_serial_sequence('ledger_account', 'id')] LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', seq, writer);
    END LOOP;
    FOR fn IN SELECT p.oid::regprocedure AS sig, p.proowner, r.rolname AS owner
                FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
               WHERE p.pronamespace = schema::regnamespace
                 AND p.proname IN ('ledger_post_one', 'ledger_post_batch', 'ledger_post_batch_atomic') LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', fn.sig, schema);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn.sig);
        IF fn.owner <> writer THEN
            -- ALTER ... OWNER TO needs the new owner to have CREATE on the schema (not for a
            -- superuser): lent for the moment, taken back below
            IF NOT me_super AND NOT lent_create AND NOT has_schema_privilege(writer, schema, 'CREATE') THEN
                EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', schema, writer);
                lent_create := true;
            END IF;
            EXECUTE format('ALTER FUNCTION %s OWNER TO %I', fn.sig, writer);
        END IF;
    END LOOP;
    IF lent_create THEN
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', schema, writer);
    END IF;
END $writer$;
