-- The labeler's core data model: accounts, projects, items, assignments (leases), responses,
-- drafts and idempotency keys. Roles and statuses are text with CHECK constraints so later
-- migrations (review, gold items) can widen them by replacing one constraint.

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.-]{1,64}$'),
    password_hash text NOT NULL,
    role          text NOT NULL CONSTRAINT users_role_check CHECK (role IN ('admin', 'annotator')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Per-user API tokens for scripts and the trainer. Only a SHA-256 of the token is stored: the
-- tokens are 256 random bits, so a slow hash would add nothing but latency.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    name         text NOT NULL,
    token_sha256 bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE projects (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    kind               text NOT NULL CHECK (kind IN ('sft', 'preference')),
    guidelines         text NOT NULL DEFAULT '',
    -- How many distinct annotators must answer each item.
    overlap            integer NOT NULL CHECK (overlap BETWEEN 1 AND 100),
    rationale_required boolean NOT NULL DEFAULT false,
    created_by         bigint REFERENCES users (id),
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per upload, so every item can be traced to the file it came from.
CREATE TABLE imports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects (id),
    source_name text NOT NULL,
    rows        integer NOT NULL,
    created_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects (id),
    import_id   bigint REFERENCES imports (id),
    external_id text NOT NULL,
    -- The conversation so far: [{"role", "content"}], ending with a user turn.
    prompt      jsonb NOT NULL,
    -- SFT: an optional model draft the annotator may edit.
    draft       text,
    -- Preference: [{"content", "model", "checkpoint", "sampling"}], two or more.
    candidates  jsonb NOT NULL DEFAULT '[]',
    meta        jsonb NOT NULL DEFAULT '{}',
    -- Copied from the project at import so the slot count can be checked by this row alone.
    overlap     integer NOT NULL CHECK (overlap BETWEEN 1 AND 100),
    -- Live leases plus submitted responses; maintained by the trigger on assignments. The
    -- CHECK is what makes "never more than N" a database guarantee.
    taken       integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT items_taken_within_overlap CHECK (taken BETWEEN 0 AND overlap),
    UNIQUE (project_id, external_id)
);
-- The queue: open items of a project in order.
CREATE INDEX items_open ON items (project_id, id) WHERE taken < overlap;

-- One row per (item, annotator), ever: an annotator never sees the same item twice (except
-- their own expired lease, which is revived in place).
CREATE TABLE assignments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     bigint NOT NULL REFERENCES items (id),
    project_id  bigint NOT NULL REFERENCES projects (id),
    user_id     bigint NOT NULL REFERENCES users (id),
    status      text NOT NULL CONSTRAINT assignments_status_check
                    CHECK (status IN ('leased', 'submitted', 'expired', 'skipped')),
    -- Preference: candidate indexes in the order shown (left, right), randomised per annotator.
    shown       smallint[] NOT NULL DEFAULT '{}',
    leased_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz,
    UNIQUE (item_id, user_id)
);
CREATE INDEX assignments_live ON assignments (project_id, expires_at) WHERE status = 'leased';
CREATE INDEX assignments_user ON assignments (user_id, project_id) WHERE status = 'leased';

-- Keeps items.taken equal to the number of live (leased or submitted) assignments.
CREATE FUNCTION assignments_count_slots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta integer := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN ('leased', 'submitted') THEN
        delta := delta + 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('leased', 'submitted') THEN
        delta := delta - 1;
    END IF;
    IF delta <> 0 AND TG_OP = 'DELETE' THEN
        UPDATE items SET taken = taken + delta WHERE id = OLD.item_id;
    ELSIF delta <> 0 THEN
        UPDATE items SET taken = taken + delta WHERE id = NEW.item_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER assignments_count_slots
    AFTER INSERT OR UPDATE OF status OR DELETE ON assignments
    FOR EACH ROW EXECUTE FUNCTION assignments_count_slots();

CREATE TABLE responses (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    assignment_id bigint NOT NULL UNIQUE REFERENCES assignments (id),
    item_id       bigint NOT NULL REFERENCES items (id),
    project_id    bigint NOT NULL REFERENCES projects (id),
    user_id       bigint NOT NULL REFERENCES users (id),
    -- SFT: the assistant answer written by the annotator.
    answer        text,
    -- Preference: which of the shown answers won, relative to `shown` of the assignment.
    choice        text CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
    strength      text CHECK (strength IN ('slightly', 'much')),
    rationale     text,
    shown         smallint[] NOT NULL DEFAULT '{}',
    time_spent_ms bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((answer IS NULL) <> (choice IS NULL)),
    UNIQUE (item_id, user_id)
);
CREATE INDEX responses_project ON responses (project_id, id);

-- Autosaved work in progress, one per (annotator, item).
CREATE TABLE drafts (
    user_id    bigint NOT NULL REFERENCES users (id),
    item_id    bigint NOT NULL REFERENCES items (id),
    body       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, item_id)
);

-- A retried submit with the same key gets the stored answer instead of a second response.
CREATE TABLE idempotency_keys (
    user_id       bigint NOT NULL REFERENCES users (id),
    key           text NOT NULL,
    status_code   smallint,
    response_body jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
