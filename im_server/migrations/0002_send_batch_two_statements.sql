-- The send path in two statements per message instead of four (measured: bench/im_load, see
-- docs/benchmarks.md). The row lock, the sequence bump and the read of the new seq are one
-- UPDATE ... RETURNING; the duplicate check is the INSERT's ON CONFLICT on (sender, cid), so
-- only a resend (rare) pays for a lookup. Behaviour is unchanged:
--   * seqs stay dense: a bump that turns out to be a duplicate or a non-member is undone while
--     this transaction still holds the conversation's row lock, so nobody saw it;
--   * a resend is 'dup' even from a sender who has since left the group (checked before
--     'not_member' is answered);
--   * a concurrent duplicate still committing elsewhere makes ON CONFLICT wait for it, then
--     this item is answered 'dup' with the committed row;
--   * rows are still handled in conversation order, so two batches lock rows in one order.
CREATE OR REPLACE FUNCTION im_send_batch(
    p_sender text[], p_cid text[], p_conv text[], p_body text[]
) RETURNS TABLE (idx int, status text, conv_id text, seq bigint, ts_ms bigint, recipients text[])
LANGUAGE plpgsql AS $$
DECLARE
    i       int;
    v_seq   bigint;
    v_ts    timestamptz;
    v_conv  text;
    v_a     text;
    v_b     text;
BEGIN
    FOR i IN
        SELECT t.ord FROM unnest(p_conv) WITH ORDINALITY AS t(c, ord) ORDER BY t.c, t.ord
    LOOP
        idx := i;
        conv_id := p_conv[i];
        recipients := NULL;
        seq := NULL;
        ts_ms := NULL;

        IF p_conv[i] LIKE 'd:%' THEN
            v_a := split_part(p_conv[i], ':', 2);
            v_b := split_part(p_conv[i], ':', 3);
            IF p_sender[i] <> v_a AND p_sender[i] <> v_b THEN
                status := 'not_member'; RETURN NEXT; CONTINUE;
            END IF;
            UPDATE conversations c SET last_seq = c.last_seq + 1 WHERE c.id = p_conv[i]
                RETURNING c.last_seq INTO v_seq;
            IF NOT FOUND THEN
                INSERT INTO conversations (id, kind, created_by)
                    VALUES (p_conv[i], 'direct', p_sender[i]) ON CONFLICT (id) DO NOTHING;
                INSERT INTO members (conv, user_id) VALUES (p_conv[i], v_a) ON CONFLICT DO NOTHING;
                IF v_b <> v_a THEN
                    INSERT INTO members (conv, user_id) VALUES (p_conv[i], v_b)
                        ON CONFLICT DO NOTHING;
                END IF;
                UPDATE conversations c SET last_seq = c.last_seq + 1 WHERE c.id = p_conv[i]
                    RETURNING c.last_seq INTO v_seq;
            END IF;
            recipients := CASE WHEN v_a = v_b THEN ARRAY[v_a] ELSE ARRAY[v_a, v_b] END;
        ELSE
            UPDATE conversations c SET last_seq = c.last_seq + 1 WHERE c.id = p_conv[i]
                RETURNING c.last_seq INTO v_seq;
            IF NOT FOUND THEN
                status := 'unknown_conversation'; RETURN NEXT; CONTINUE;
            END IF;
            -- Membership read under the row lock: a removal that committed first is seen.
            SELECT array_agg(mb.user_id) INTO recipients FROM members mb WHERE mb.conv = p_conv[i];
            IF recipients IS NULL OR NOT (p_sender[i] = ANY (recipients)) THEN
                UPDATE conversations c SET last_seq = c.last_seq - 1 WHERE c.id = p_conv[i];
                recipients := NULL;
                SELECT m.conv, m.seq, m.ts INTO v_conv, v_seq, v_ts
                  FROM messages m WHERE m.sender = p_sender[i] AND m.cid = p_cid[i];
                IF FOUND THEN
                    status := 'dup'; conv_id := v_conv; seq := v_seq; ts_ms := im_ms(v_ts);
                ELSE
                    status := 'not_member';
                END IF;
                RETURN NEXT; CONTINUE;
            END IF;
        END IF;

        INSERT INTO messages (conv, seq, sender, cid, body)
            VALUES (p_conv[i], v_seq, p_sender[i], p_cid[i], p_body[i])
            ON CONFLICT (sender, cid) DO NOTHING
            RETURNING messages.ts INTO v_ts;
        IF NOT FOUND THEN
            UPDATE conversations c SET last_seq = c.last_seq - 1 WHERE c.id = p_conv[i];
            SELECT m.conv, m.seq, m.ts INTO v_conv, v_seq, v_ts
              FROM messages m WHERE m.sender = p_sender[i] AND m.cid = p_cid[i];
            status := 'dup'; conv_id := v_conv; seq := v_seq; ts_ms := im_ms(v_ts);
            recipients := NULL;
            RETURN NEXT; CONTINUE;
        END IF;
        status := 'ok'; seq := v_seq; ts_ms := im_ms(v_ts);
        RETURN NEXT;
    END LOOP;
END
$$;
