-- Audit log (append-only) and review: a reviewer role, review decisions on responses, and
-- every version of an edited response.

-- Who did what. Rows are only ever inserted: the trigger below refuses UPDATE, DELETE and
-- TRUNCATE for every role, the table owner included (REVOKE alone would not stop the owner).
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    -- NULL: the command line (`labeler user add`, ...), run by whoever holds the database.
    actor_id   bigint REFERENCES users (id),
    actor      text NOT NULL,
    action     text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    project_id bigint REFERENCES projects (id),
    target     text,
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_project ON audit_log (project_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'reviewer', 'annotator'));

-- A rejected assignment gives its slot back (the slot trigger counts only leased and
-- submitted), and stays as a row so the same annotator never gets the item again.
ALTER TABLE assignments DROP CONSTRAINT assignments_status_check;
ALTER TABLE assignments ADD CONSTRAINT assignments_status_check
    CHECK (status IN ('leased', 'submitted', 'expired', 'skipped', 'rejected'));

ALTER TABLE responses
    ADD COLUMN review_status  text NOT NULL DEFAULT 'pending'
        CHECK (review_status IN ('pending', 'accepted', 'rejected')),
    ADD COLUMN reviewed_by    bigint REFERENCES users (id),
    ADD COLUMN reviewed_at    timestamptz,
    ADD COLUMN review_comment text,
    -- The current version: 1 as submitted, +1 per reviewer edit (see response_versions).
    ADD COLUMN version        integer NOT NULL DEFAULT 1;
CREATE INDEX responses_review ON responses (project_id, review_status, id);

-- Every version of an edited response. The first edit copies the annotator's original in
-- as version 1, so the original is never lost; `responses` holds the latest.
CREATE TABLE response_versions (
    response_id bigint NOT NULL REFERENCES responses (id),
    version     integer NOT NULL CHECK (version >= 1),
    answer      text,
    choice      text CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    strength    text CHECK (strength IN ('slightly', 'much')),
    rationale   text,
    author_id   bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (response_id, version),
    CHECK ((answer IS NULL) <> (choice IS NULL))
);
