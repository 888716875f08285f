-- Single sign-on: which labeler user an OpenID Connect identity (issuer + subject) is. The
-- first sign-in of a new identity makes its user (with an unusable random password); a local
-- account of the same name is never taken over.
CREATE TABLE oidc_identities (
    issuer        text NOT NULL,
    subject       text NOT NULL,
    user_id       bigint NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_identities_user ON oidc_identities (user_id);
