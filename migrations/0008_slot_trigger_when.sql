-- The slot count on items changes only when an assignment enters or leaves the counted
-- statuses (leased, submitted). The trigger used to run its PL/pgSQL function on every
-- insert, status update and delete, including the commonest of all, a submit
-- (leased -> submitted), where the function found nothing to do. WHEN conditions are checked
-- in the executor, without a function call: the function now runs only when `taken` moves.
-- Same function, same counts.
DROP TRIGGER assignments_count_slots ON assignments;

CREATE TRIGGER assignments_count_slots_insert
    AFTER INSERT ON assignments
    FOR EACH ROW WHEN (NEW.status IN ('leased', 'submitted'))
    EXECUTE FUNCTION assignments_count_slots();
CREATE TRIGGER assignments_count_slots_update
    AFTER UPDATE OF status ON assignments
    FOR EACH ROW WHEN ((OLD.status IN ('leased', 'submitted'))
                       <> (NEW.status IN ('leased', 'submitted')))
    EXECUTE FUNCTION assignments_count_slots();
CREATE TRIGGER assignments_count_slots_delete
    AFTER DELETE ON assignments
    FOR EACH ROW WHEN (OLD.status IN ('leased', 'submitted'))
    EXECUTE FUNCTION assignments_count_slots();
