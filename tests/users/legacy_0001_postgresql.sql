-- A database made by migration 0001 as Bastion released it (PostgreSQL), frozen as test data:
-- tables without the bastion_ prefix, the revision in Alembic's default alembic_version.
-- Printed by `alembic upgrade 0001 --sql` before 0001 was rewritten; never edit.

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE bastion_kv (
    namespace VARCHAR(64) NOT NULL,
    key VARCHAR(255) NOT NULL,
    value BYTEA NOT NULL,
    expires_at FLOAT,
    CONSTRAINT pk_bastion_kv PRIMARY KEY (namespace, key)
);

CREATE INDEX ix_bastion_kv_expires_at ON bastion_kv (expires_at);

CREATE TABLE bastion_kv_member (
    namespace VARCHAR(64) NOT NULL,
    key VARCHAR(255) NOT NULL,
    member VARCHAR(255) NOT NULL,
    expires_at FLOAT,
    CONSTRAINT pk_bastion_kv_member PRIMARY KEY (namespace, key, member)
);

CREATE INDEX ix_bastion_kv_member_expires_at ON bastion_kv_member (expires_at);

CREATE TABLE users (
    id SERIAL NOT NULL,
    username VARCHAR(150) NOT NULL,
    username_key VARCHAR(150) NOT NULL,
    email VARCHAR(254),
    email_key VARCHAR(254),
    password_hash VARCHAR(1024) NOT NULL,
    is_active BOOLEAN NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    last_login_at TIMESTAMP WITH TIME ZONE,
    password_changed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT pk_users PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_users_username_key ON users (username_key);

CREATE UNIQUE INDEX ix_users_email_key ON users (email_key);

CREATE TABLE roles (
    id SERIAL NOT NULL,
    name VARCHAR(64) NOT NULL,
    CONSTRAINT pk_roles PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_roles_name ON roles (name);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL,
    role_id INTEGER NOT NULL,
    CONSTRAINT pk_user_roles PRIMARY KEY (user_id, role_id),
    CONSTRAINT fk_user_roles_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT fk_user_roles_role_id_roles FOREIGN KEY(role_id) REFERENCES roles (id) ON DELETE CASCADE
);

CREATE INDEX ix_user_roles_role_id ON user_roles (role_id);

CREATE TABLE audit_events (
    id BIGSERIAL NOT NULL,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    event VARCHAR(64) NOT NULL,
    user_id INTEGER,
    username VARCHAR(255),
    actor_id INTEGER,
    ip VARCHAR(64),
    user_agent VARCHAR(512),
    session_ref VARCHAR(64),
    detail TEXT,
    CONSTRAINT pk_audit_events PRIMARY KEY (id),
    CONSTRAINT fk_audit_events_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT fk_audit_events_actor_id_users FOREIGN KEY(actor_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE INDEX ix_audit_events_at ON audit_events (at);

CREATE INDEX ix_audit_events_user_id ON audit_events (user_id);

CREATE INDEX ix_audit_events_actor_id ON audit_events (actor_id);

INSERT INTO alembic_version (version_num) VALUES ('0001');
