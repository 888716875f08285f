-- Rating projects (issue 18): one answer per item, judged thumbs up or down, with optional
-- 1-5 scores on the aspects the project names and an optional comment.

ALTER TABLE projects DROP CONSTRAINT projects_kind_check;
ALTER TABLE projects ADD CONSTRAINT projects_kind_check
    CHECK (kind IN ('sft', 'preference', 'rating'));
-- Rating: [{"name", "guideline"}], the aspects scored 1-5 (checked by the application).
ALTER TABLE projects ADD COLUMN aspects jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(aspects) = 'array');

-- A rating response: `label` (true = thumbs up), `scores` {"aspect": 1-5}, `comment`. Exactly
-- one of answer (sft), choice (preference) and label (rating) is set; the old CHECK said
-- "answer or choice", so it is replaced (found by its definition: it was created unnamed).
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname, conrelid::regclass AS tbl FROM pg_constraint
             WHERE conrelid IN ('responses'::regclass, 'response_versions'::regclass)
               AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%answer IS NULL%choice IS NULL%'
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
    END LOOP;
END;
$$;

ALTER TABLE responses
    ADD COLUMN label   boolean,
    ADD COLUMN scores  jsonb CHECK (scores IS NULL OR jsonb_typeof(scores) = 'object'),
    ADD COLUMN comment text,
    ADD CONSTRAINT responses_one_kind CHECK (num_nonnulls(answer, choice, label) = 1);

ALTER TABLE response_versions
    ADD COLUMN label   boolean,
    ADD COLUMN scores  jsonb CHECK (scores IS NULL OR jsonb_typeof(scores) = 'object'),
    ADD COLUMN comment text,
    ADD CONSTRAINT response_versions_one_kind CHECK (num_nonnulls(answer, choice, label) = 1);
