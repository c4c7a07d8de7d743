-- ASVS 2.3.1: a password an administrator set (a new account's, or a reset) is not the long-term
-- password: the user sets their own at the next login before anything else.
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;
