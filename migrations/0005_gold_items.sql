-- Gold items: admins mark preference items with the candidate that should win; the queue
-- mixes them in at the project's gold_rate, and agreement reports each annotator's accuracy.
ALTER TABLE items ADD COLUMN gold_winner smallint CHECK (gold_winner >= 0);
ALTER TABLE projects ADD COLUMN gold_rate double precision NOT NULL DEFAULT 0
    CHECK (gold_rate >= 0 AND gold_rate <= 1);
CREATE INDEX items_gold ON items (project_id, id) WHERE gold_winner IS NOT NULL;
