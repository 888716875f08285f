-- Deleting a project that nobody answered removes its items, leases and imports but keeps
-- the project row, marked deleted and renamed (its name is free again), because the
-- append-only audit log refers to it.
ALTER TABLE projects ADD COLUMN deleted_at timestamptz;
