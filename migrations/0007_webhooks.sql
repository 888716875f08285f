-- Webhooks: per project an optional URL and the secret that signs each POST, and an outbox of
-- events written in the same transaction as what caused them, delivered by a background task
-- (at least once; the delivery id stays the same across retries so receivers can dedup).

ALTER TABLE projects
    ADD COLUMN webhook_url    text CHECK (webhook_url ~ '^https?://' AND length(webhook_url) <= 2000),
    -- Kept as is: HMAC needs the secret itself. The API shows only its last four characters.
    ADD COLUMN webhook_secret text CHECK (length(webhook_secret) BETWEEN 16 AND 256),
    ADD CONSTRAINT projects_webhook_pair CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL));

CREATE TABLE webhook_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Sent as X-Jielong-Delivery and as "id" in the body; the same on every attempt.
    delivery_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    project_id      bigint NOT NULL REFERENCES projects (id),
    event           text NOT NULL CHECK (event IN ('item.completed', 'export.created')),
    -- The event's own fields ("project", "item" or "export"); "id", "event" and "at" are
    -- added when sending.
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    -- When the deliverer may take it next; moved forward while an attempt runs, so a second
    -- server process (or a crashed attempt) does not double-send at once.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    -- Set when the deliverer gives up (attempts used up, or the webhook was removed).
    failed_at       timestamptz,
    last_status     smallint,
    last_error      text
);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_events_project ON webhook_events (project_id, id);

-- item.completed: when a submitted response brings an item to its overlap N (responses not
-- rejected). A trigger, so every way a response is stored writes the event in its own
-- transaction. Only projects with a webhook pay more than one primary-key lookup.
CREATE FUNCTION webhook_item_completed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    project_name  text;
    item_overlap  integer;
    item_external text;
    answered      bigint;
BEGIN
    SELECT name INTO project_name FROM projects
        WHERE id = NEW.project_id AND webhook_url IS NOT NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- The last two responses of an item, committed at once, would each count only their own:
    -- submits of one item take turns here, and the count below (a fresh snapshot under READ
    -- COMMITTED) then sees the one committed before.
    PERFORM pg_advisory_xact_lock(7302, hashint8(NEW.item_id));
    SELECT overlap, external_id INTO item_overlap, item_external FROM items
        WHERE id = NEW.item_id;
    SELECT count(*) INTO answered FROM responses
        WHERE item_id = NEW.item_id AND review_status <> 'rejected';
    IF answered = item_overlap THEN
        INSERT INTO webhook_events (project_id, event, payload)
        VALUES (NEW.project_id, 'item.completed', jsonb_build_object(
            'project', jsonb_build_object('id', NEW.project_id, 'name', project_name),
            'item', jsonb_build_object('id', NEW.item_id, 'external_id', item_external,
                                       'responses', answered)));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER responses_webhook_item_completed
    AFTER INSERT ON responses
    FOR EACH ROW EXECUTE FUNCTION webhook_item_completed();
