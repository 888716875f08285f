-- Model pre-labels (issue 18): a model's suggested verdict per item, shown to annotators
-- ('shown', to speed up) or only after they answered ('hidden', to measure without
-- anchoring), and compared with the humans' on the agreement page.
ALTER TABLE projects ADD COLUMN prelabels text CHECK (prelabels IN ('hidden', 'shown'));

CREATE TABLE prelabels (
    item_id    bigint PRIMARY KEY REFERENCES items (id),
    project_id bigint NOT NULL REFERENCES projects (id),
    -- What made it: a reward model or checkpoint name.
    source     text NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
    -- Rating: thumbs up (true) or down. Preference: the candidate index that should win.
    label      boolean,
    winner     smallint CHECK (winner >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(label, winner) = 1)
);
CREATE INDEX prelabels_project ON prelabels (project_id);
