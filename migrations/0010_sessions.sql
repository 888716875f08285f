-- Browser sessions on the server side, so that a session can end before its cookie does:
-- signing out, changing the password and disabling the user close rows, and the server refuses
-- a session that was idle or open too long. The signed session cookie carries a random
-- session id; only its SHA-256 is stored (like API tokens: 256 random bits need no slow hash).
CREATE TABLE sessions (
    id_sha256    bytea PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Updated at most once a minute (less often than every request), for the idle timeout.
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the session was ended (sign-out, password change, user disabled).
    ended_at     timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);
