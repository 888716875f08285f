-- Keyset pagination over a project's items (`GET /api/projects/{id}/prompts?after=`): one
-- index range scan per page instead of a walk of the primary key filtered by project.
CREATE INDEX items_by_project ON items (project_id, id);
