-- Annotator and lead tools (issue 15): a skip may carry the annotator's reason, which leads
-- read on the dashboard; projects can be archived (hidden from annotators, still exported);
-- undo looks for the newest response of a user in a project.
ALTER TABLE assignments ADD COLUMN skip_reason text
    CHECK (skip_reason IS NULL OR length(skip_reason) <= 1000);
ALTER TABLE projects ADD COLUMN archived_at timestamptz;
CREATE INDEX responses_user_project ON responses (user_id, project_id, id);
-- "Is this response in an export already taken": the newest export of the project.
CREATE INDEX audit_log_exports ON audit_log (project_id, at) WHERE action = 'project.export';
