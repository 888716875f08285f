-- Vacuum the queue's two hot tables after a fixed number of changed rows instead of a share of
-- the table (the default: 20%). Every lease makes the `items_open` entry of the item it fills
-- dead, and every submit makes the `assignments_user` / `assignments_live` entries of its lease
-- dead; until a vacuum removes them, each lease walks past them (the queue scan starts at the
-- project's first item, the held-lease lookup reads every past lease of the annotator). With
-- the default, a 1M-item project could collect 200,000 dead queue entries before a vacuum;
-- now a few thousand. Vacuuming these tables costs tens of milliseconds per round.
ALTER TABLE items SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);
ALTER TABLE assignments SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);
