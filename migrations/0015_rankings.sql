-- Ranking of k answers (issue 18) in preference projects: with `ranking` set, each task shows
-- all of an item's candidates (2 to 9) in a random order and the annotator ranks them.
ALTER TABLE projects ADD COLUMN ranking boolean NOT NULL DEFAULT false;

-- The ranks of the answers in the order shown (`shown`): 1 = best, equal ranks for ties.
ALTER TABLE responses ADD COLUMN ranking smallint[]
    CHECK (ranking IS NULL OR cardinality(ranking) BETWEEN 2 AND 9);
ALTER TABLE responses DROP CONSTRAINT responses_one_kind;
ALTER TABLE responses ADD CONSTRAINT responses_one_kind
    CHECK (num_nonnulls(answer, choice, label, ranking) = 1);

ALTER TABLE response_versions ADD COLUMN ranking smallint[];
ALTER TABLE response_versions DROP CONSTRAINT response_versions_one_kind;
ALTER TABLE response_versions ADD CONSTRAINT response_versions_one_kind
    CHECK (num_nonnulls(answer, choice, label, ranking) = 1);
