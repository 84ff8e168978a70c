-- Conversations, members and messages. PostgreSQL is the system of record: everything a client
-- can see is here, nothing lives only in memory or on the bus.
CREATE TABLE conversations (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('direct', 'group')),
    title       text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seq    bigint NOT NULL DEFAULT 0
);

CREATE TABLE members (
    conv        text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    role        text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'member')),
    read_seq    bigint NOT NULL DEFAULT 0,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conv, user_id)
);
CREATE INDEX members_by_user ON members (user_id);

CREATE TABLE messages (
    conv    text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    sender  text NOT NULL,
    cid     text,                     -- NULL for system messages (membership changes)
    body    text NOT NULL,            -- canonical JSON text, pushed to clients byte for byte
    ts      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (conv, seq)
);
-- Idempotent send: a resend of (sender, cid) finds the original row. A unique index, not a cache,
-- so it holds across nodes and restarts.
CREATE UNIQUE INDEX messages_sender_cid ON messages (sender, cid);

CREATE FUNCTION im_ms(t timestamptz) RETURNS bigint
    LANGUAGE sql IMMUTABLE AS $$ SELECT (extract(epoch FROM t) * 1000)::bigint $$;

-- One call commits a whole batch of sends (group commit). Rows are visited in conversation order
-- so two concurrent batches lock conversations in the same order and cannot deadlock each other.
-- The seq is taken under the conversation's row lock in the same transaction as the insert, so
-- seqs are dense: a rollback returns the number with everything else.
CREATE FUNCTION im_send_batch(
    p_sender text[], p_cid text[], p_conv text[], p_body text[]
) RETURNS TABLE (idx int, status text, conv_id text, seq bigint, ts_ms bigint, recipients text[])
LANGUAGE plpgsql AS $$
DECLARE
    i       int;
    v_seq   bigint;
    v_ts    timestamptz;
    v_conv  text;
    v_kind  text;
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

        SELECT m.conv, m.seq, m.ts INTO v_conv, v_seq, v_ts
          FROM messages m WHERE m.sender = p_sender[i] AND m.cid = p_cid[i];
        IF FOUND THEN
            status := 'dup'; conv_id := v_conv; seq := v_seq; ts_ms := im_ms(v_ts);
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF p_conv[i] LIKE 'd:%' THEN
            v_a := split_part(p_conv[i], ':', 2);
            v_b := split_part(p_conv[i], ':', 3);
            IF p_sender[i] <> v_a AND p_sender[i] <> v_b THEN
                status := 'not_member'; RETURN NEXT; CONTINUE;
            END IF;
            SELECT c.last_seq INTO v_seq FROM conversations c WHERE c.id = p_conv[i] FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO conversations (id, kind, created_by) VALUES (p_conv[i], 'direct', p_sender[i])
                    ON CONFLICT (id) DO NOTHING;
                INSERT INTO members (conv, user_id) VALUES (p_conv[i], v_a) ON CONFLICT DO NOTHING;
                IF v_b <> v_a THEN
                    INSERT INTO members (conv, user_id) VALUES (p_conv[i], v_b) ON CONFLICT DO NOTHING;
                END IF;
                SELECT c.last_seq INTO v_seq FROM conversations c WHERE c.id = p_conv[i] FOR UPDATE;
            END IF;
            recipients := CASE WHEN v_a = v_b THEN ARRAY[v_a] ELSE ARRAY[v_a, v_b] END;
        ELSE
            -- Lock first, then check membership: a removal that committed while we waited is seen.
            SELECT c.last_seq, c.kind INTO v_seq, v_kind
              FROM conversations c WHERE c.id = p_conv[i] FOR UPDATE;
            IF NOT FOUND THEN
                status := 'unknown_conversation'; RETURN NEXT; CONTINUE;
            END IF;
            SELECT array_agg(mb.user_id) INTO recipients FROM members mb WHERE mb.conv = p_conv[i];
            IF recipients IS NULL OR NOT (p_sender[i] = ANY (recipients)) THEN
                status := 'not_member'; recipients := NULL; RETURN NEXT; CONTINUE;
            END IF;
        END IF;

        v_seq := v_seq + 1;
        UPDATE conversations SET last_seq = v_seq WHERE id = p_conv[i];
        INSERT INTO messages (conv, seq, sender, cid, body)
            VALUES (p_conv[i], v_seq, p_sender[i], p_cid[i], p_body[i])
            RETURNING messages.ts INTO v_ts;
        status := 'ok'; seq := v_seq; ts_ms := im_ms(v_ts);
        RETURN NEXT;
    END LOOP;
END
$$;
