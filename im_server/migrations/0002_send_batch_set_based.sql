-- The send path as set operations: a fixed number of statements per batch instead of four
-- per message (measured: bench/im_load, see docs/benchmarks.md). What it guarantees:
--   * a (sender, cid) already stored answers 'dup' with the original row, even from a sender
--     who has since left the group (checked before membership);
--   * the same (sender, cid) twice in one batch is sent once; later copies answer 'dup';
--   * per conversation, seqs follow the batch order (one connection's sends stay in order) and
--     stay dense: only the sends that are inserted take a number;
--   * conversations are locked in id order, so concurrent batches cannot deadlock each other;
--   * a concurrent duplicate still committing elsewhere makes the INSERT fail on the unique
--     index once it commits; the caller retries the batch, which then finds the original.
-- Two differences from 0001's loop, both only for a client that reuses one cid for sends to
-- different conversations (a client bug): in one batch, a copy to a conversation it may not
-- send to answers not_member / unknown_conversation rather than dup (each send is judged
-- against the state before the batch); and a resend naming a direct conversation that does
-- not exist yet creates it, empty, before being answered dup.
CREATE OR REPLACE FUNCTION im_send_batch(
    p_sender text[], p_cid text[], p_conv text[], p_body text[]
) RETURNS TABLE (idx int, status text, conv_id text, seq bigint, ts_ms bigint, recipients text[])
LANGUAGE plpgsql AS $$
BEGIN
    -- A direct conversation comes into being with its first message, with both members.
    WITH fresh AS (
        INSERT INTO conversations (id, kind, created_by)
        SELECT DISTINCT ON (t.v) t.v, 'direct', t.s
          FROM unnest(p_conv, p_sender) AS t(v, s)
         WHERE t.v LIKE 'd:%' AND t.s IN (split_part(t.v, ':', 2), split_part(t.v, ':', 3))
         ORDER BY t.v
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    INSERT INTO members (conv, user_id)
    SELECT DISTINCT f.id, u.user_id
      FROM fresh f,
           LATERAL (VALUES (split_part(f.id, ':', 2)), (split_part(f.id, ':', 3))) AS u(user_id)
    ON CONFLICT DO NOTHING;

    PERFORM 1 FROM conversations c WHERE c.id = ANY (p_conv) ORDER BY c.id FOR UPDATE;

    RETURN QUERY
    WITH b AS (
        SELECT t.ord::int AS ord, t.s, t.c, t.v, t.bd,
               split_part(t.v, ':', 2) AS da, split_part(t.v, ':', 3) AS db
          FROM unnest(p_sender, p_cid, p_conv, p_body) WITH ORDINALITY AS t(s, c, v, bd, ord)
    ), prior AS (
        -- One probe of the (sender, cid) index per send, whatever the statistics say: LIMIT
        -- keeps the planner from turning this into a join that reads the whole table.
        SELECT b.ord, m.conv, m.seq, m.ts
          FROM b CROSS JOIN LATERAL (
                   SELECT m.conv, m.seq, m.ts FROM messages m
                    WHERE m.sender = b.s AND m.cid = b.c LIMIT 1
               ) m
    ), conv AS (
        SELECT c.id, c.last_seq FROM conversations c WHERE c.id = ANY (p_conv)
    ), grp AS (
        SELECT mb.conv, array_agg(mb.user_id) AS users
          FROM members mb
         WHERE mb.conv = ANY (p_conv) AND mb.conv NOT LIKE 'd:%'
         GROUP BY mb.conv
    ), cls AS (
        SELECT b.*, conv.last_seq, p.conv AS p_conv, p.seq AS p_seq, p.ts AS p_ts,
               CASE WHEN b.v NOT LIKE 'd:%' THEN grp.users
                    WHEN b.da = b.db THEN ARRAY[b.da]
                    ELSE ARRAY[b.da, b.db] END AS users,
               CASE WHEN p.ord IS NOT NULL THEN 'dup'
                    WHEN b.v LIKE 'd:%' THEN
                        CASE WHEN b.s IN (b.da, b.db) THEN 'ok' ELSE 'not_member' END
                    WHEN conv.id IS NULL THEN 'unknown_conversation'
                    WHEN grp.users IS NULL OR NOT (b.s = ANY (grp.users)) THEN 'not_member'
                    ELSE 'ok' END AS st
          FROM b
          LEFT JOIN prior p ON p.ord = b.ord
          LEFT JOIN conv ON conv.id = b.v
          LEFT JOIN grp ON grp.conv = b.v
    ), firsts AS (
        -- The same (sender, cid) twice: the first send that can go goes, the rest are its dups.
        SELECT cls.ord, row_number() OVER (PARTITION BY cls.s, cls.c ORDER BY cls.ord) AS k
          FROM cls WHERE cls.st = 'ok'
    ), ranked AS (
        SELECT cls.ord, cls.s, cls.c, cls.v, cls.bd,
               cls.last_seq + row_number() OVER (PARTITION BY cls.v ORDER BY cls.ord) AS new_seq
          FROM cls JOIN firsts f ON f.ord = cls.ord AND f.k = 1
    ), bump AS (
        UPDATE conversations c SET last_seq = r.top
          FROM (SELECT ranked.v, max(ranked.new_seq) AS top FROM ranked GROUP BY ranked.v) r
         WHERE c.id = r.v
    ), ins AS (
        INSERT INTO messages (conv, seq, sender, cid, body)
        SELECT r.v, r.new_seq, r.s, r.c, r.bd FROM ranked r
        RETURNING messages.sender, messages.cid, messages.conv, messages.seq, messages.ts
    )
    SELECT cls.ord,
           CASE WHEN cls.st = 'ok' AND f.k > 1 THEN 'dup' ELSE cls.st END,
           CASE WHEN cls.st = 'dup' THEN cls.p_conv WHEN cls.st = 'ok' THEN i.conv
                ELSE cls.v END,
           CASE WHEN cls.st = 'dup' THEN cls.p_seq ELSE i.seq END,
           im_ms(CASE WHEN cls.st = 'dup' THEN cls.p_ts ELSE i.ts END),
           CASE WHEN cls.st = 'ok' AND f.k = 1 THEN cls.users END
      FROM cls
      LEFT JOIN firsts f ON f.ord = cls.ord
      LEFT JOIN ins i ON cls.st = 'ok' AND i.sender = cls.s AND i.cid = cls.c;
END
$$;
