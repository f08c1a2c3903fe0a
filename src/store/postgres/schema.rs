//! The PostgreSQL schema: the tables and indexes of SQLite's migrations 1 to 10
//! ([`super::super::sqlite`]), translated, as migration 1; later migrations follow SQLite's one
//! for one (PostgreSQL's 2 is SQLite's 11). The version lives in `schema_version` (one row), changed in the migration's own
//! transaction under an advisory lock, so nodes starting together migrate once.
//!
//! Translation: `INTEGER` → `BIGINT` (every integer the store binds is 64-bit), row ids →
//! `BIGINT GENERATED ALWAYS AS IDENTITY`, flags → `BOOLEAN`, and `COLLATE "C"` on every sid so
//! that keyset paging orders `(date_created, sid)` bytewise as SQLite does, whatever the
//! database's locale.

/// Migrations; entry `i` brings the database to `schema_version = i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1 to 10 make.
    r#"
    CREATE TABLE calls (
        id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid               TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid       TEXT NOT NULL,
        parent_call_sid   TEXT COLLATE "C",
        "from"            TEXT NOT NULL,
        "to"              TEXT NOT NULL,
        direction         TEXT NOT NULL,
        status            TEXT NOT NULL,
        start_time        BIGINT,
        answer_time       BIGINT,
        end_time          BIGINT,
        duration          BIGINT,
        sip_call_id       TEXT,
        sip_response_code BIGINT,
        error_code        BIGINT,
        error_message     TEXT,
        forwarded_from    TEXT,
        caller_name       TEXT,
        url               TEXT,
        method            TEXT,
        date_created      BIGINT NOT NULL,
        date_updated      BIGINT NOT NULL,
        callback_url      TEXT,
        callback_method   TEXT,
        callback_params   TEXT
    );
    CREATE INDEX calls_by_date_created ON calls (date_created, sid);
    CREATE INDEX calls_by_status ON calls (status, date_created, sid);
    CREATE INDEX calls_by_from ON calls ("from", date_created, sid);
    CREATE INDEX calls_by_to ON calls ("to", date_created, sid);
    CREATE INDEX calls_by_parent ON calls (parent_call_sid, date_created, sid)
        WHERE parent_call_sid IS NOT NULL;
    CREATE INDEX calls_owing_callbacks ON calls (status) WHERE callback_url IS NOT NULL;

    CREATE TABLE store_info (
        id            BIGINT PRIMARY KEY CHECK (id = 1),
        created_at    BIGINT NOT NULL,
        start_lag_min BIGINT,
        start_lag_max BIGINT
    );
    INSERT INTO store_info (id, created_at)
        VALUES (1, CAST(extract(epoch FROM clock_timestamp()) * 1000000000 AS BIGINT));

    CREATE TABLE recordings (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid             TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid     TEXT NOT NULL,
        call_sid        TEXT COLLATE "C" NOT NULL,
        status          TEXT NOT NULL,
        channels        BIGINT NOT NULL,
        duration        BIGINT,
        start_time      BIGINT NOT NULL,
        source          TEXT NOT NULL,
        file            TEXT,
        error_code      BIGINT,
        date_created    BIGINT NOT NULL,
        date_updated    BIGINT NOT NULL,
        conference_sid  TEXT COLLATE "C",
        callback_url    TEXT,
        callback_method TEXT,
        callback_events TEXT
    );
    CREATE INDEX recordings_by_date_created ON recordings (date_created, sid);
    CREATE INDEX recordings_by_call ON recordings (call_sid, date_created, sid);
    CREATE INDEX recordings_by_conference ON recordings (conference_sid, date_created, sid)
        WHERE conference_sid IS NOT NULL;

    CREATE TABLE queues (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid           TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        max_size      BIGINT NOT NULL,
        date_created  BIGINT NOT NULL,
        date_updated  BIGINT NOT NULL
    );
    CREATE TABLE queue_members (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue_sid     TEXT COLLATE "C" NOT NULL,
        call_sid      TEXT COLLATE "C" NOT NULL,
        date_enqueued BIGINT NOT NULL,
        date_left     BIGINT,
        result        TEXT,
        wait_time     BIGINT,
        UNIQUE (queue_sid, call_sid, date_enqueued)
    );
    CREATE INDEX queue_members_waiting ON queue_members (date_left) WHERE date_left IS NULL;

    CREATE TABLE notifications (
        id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid            TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid    TEXT NOT NULL,
        call_sid       TEXT COLLATE "C" NOT NULL,
        log            BIGINT NOT NULL,
        error_code     BIGINT NOT NULL,
        message_text   TEXT NOT NULL,
        message_date   BIGINT NOT NULL,
        request_url    TEXT,
        request_method TEXT,
        date_created   BIGINT NOT NULL,
        date_updated   BIGINT NOT NULL
    );
    CREATE INDEX notifications_by_date_created ON notifications (date_created, sid);
    CREATE INDEX notifications_by_call ON notifications (call_sid, date_created, sid);

    CREATE TABLE conferences (
        id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid             TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid     TEXT NOT NULL,
        friendly_name   TEXT NOT NULL,
        status          TEXT NOT NULL,
        reason_ended    TEXT,
        call_sid_ending TEXT,
        date_created    BIGINT NOT NULL,
        date_updated    BIGINT NOT NULL
    );
    CREATE INDEX conferences_by_date_created ON conferences (date_created, sid);
    CREATE INDEX conferences_by_name ON conferences (friendly_name, date_created, sid);
    CREATE INDEX conferences_open ON conferences (status) WHERE status != 'completed';

    CREATE TABLE sip_domains (
        id                           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid                          TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid                  TEXT NOT NULL,
        domain_name                  TEXT NOT NULL UNIQUE,
        friendly_name                TEXT NOT NULL,
        voice_url                    TEXT,
        voice_method                 TEXT NOT NULL,
        voice_fallback_url           TEXT,
        voice_fallback_method        TEXT NOT NULL,
        voice_status_callback_url    TEXT,
        voice_status_callback_method TEXT NOT NULL,
        sip_registration             BOOLEAN NOT NULL,
        realm                        TEXT NOT NULL,
        endpoint_list_sid            TEXT,
        date_created                 BIGINT NOT NULL,
        date_updated                 BIGINT NOT NULL
    );
    CREATE TABLE sip_credential_lists (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid           TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        date_created  BIGINT NOT NULL,
        date_updated  BIGINT NOT NULL
    );
    CREATE TABLE sip_credentials (
        id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid                      TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid              TEXT NOT NULL,
        credential_list_sid      TEXT NOT NULL,
        username                 TEXT NOT NULL,
        realm                    TEXT NOT NULL,
        ha1_md5                  TEXT NOT NULL,
        ha1_sha256               TEXT NOT NULL,
        endpoint_domain_sid      TEXT,
        endpoint_description     TEXT,
        endpoint_application_sid TEXT,
        endpoint_enabled         BOOLEAN,
        date_created             BIGINT NOT NULL,
        date_updated             BIGINT NOT NULL,
        UNIQUE (credential_list_sid, username)
    );
    CREATE TABLE sip_ip_acls (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid           TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        date_created  BIGINT NOT NULL,
        date_updated  BIGINT NOT NULL
    );
    CREATE TABLE sip_ip_addresses (
        id                         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid                        TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid                TEXT NOT NULL,
        ip_access_control_list_sid TEXT NOT NULL,
        friendly_name              TEXT NOT NULL,
        ip_address                 TEXT NOT NULL,
        cidr_prefix_length         BIGINT NOT NULL,
        date_created               BIGINT NOT NULL,
        date_updated               BIGINT NOT NULL
    );
    CREATE TABLE sip_domain_mappings (
        domain_sid   TEXT NOT NULL,
        kind         TEXT NOT NULL,
        list_sid     TEXT COLLATE "C" NOT NULL,
        date_created BIGINT NOT NULL,
        PRIMARY KEY (domain_sid, kind, list_sid)
    );
    CREATE TABLE sip_bindings (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        domain_sid    TEXT NOT NULL,
        username      TEXT NOT NULL,
        contact       TEXT NOT NULL,
        instance      TEXT,
        reg_id        BIGINT,
        call_id       TEXT NOT NULL,
        cseq          BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        transport     TEXT NOT NULL,
        source        TEXT NOT NULL,
        path          TEXT NOT NULL,
        user_agent    TEXT,
        registered_at BIGINT NOT NULL
    );
    CREATE INDEX sip_bindings_by_user ON sip_bindings (domain_sid, username);
    CREATE TABLE applications (
        id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid                    TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid            TEXT NOT NULL,
        name                   TEXT NOT NULL,
        incoming_call_url      TEXT,
        callback_method        TEXT NOT NULL,
        auto_answer            BOOLEAN NOT NULL,
        date_created           BIGINT NOT NULL,
        date_updated           BIGINT NOT NULL,
        voice_fallback_url     TEXT,
        voice_fallback_method  TEXT NOT NULL DEFAULT 'POST',
        status_callback        TEXT,
        status_callback_method TEXT NOT NULL DEFAULT 'POST'
    );
    CREATE TABLE incoming_numbers (
        id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sid                    TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid            TEXT NOT NULL,
        phone_number           TEXT NOT NULL UNIQUE,
        friendly_name          TEXT NOT NULL,
        voice_url              TEXT,
        voice_method           TEXT NOT NULL,
        voice_fallback_url     TEXT,
        voice_fallback_method  TEXT NOT NULL,
        status_callback        TEXT,
        status_callback_method TEXT NOT NULL,
        voice_application_sid  TEXT,
        date_created           BIGINT NOT NULL,
        date_updated           BIGINT NOT NULL
    );

    CREATE TABLE capture_sip (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sip_call_id TEXT NOT NULL,
        at          BIGINT NOT NULL,
        direction   TEXT NOT NULL,
        transport   TEXT NOT NULL,
        local       TEXT NOT NULL,
        remote      TEXT NOT NULL,
        first_line  TEXT NOT NULL,
        size        BIGINT NOT NULL,
        text        TEXT NOT NULL
    );
    CREATE INDEX capture_sip_by_call ON capture_sip (sip_call_id, id);
    CREATE TABLE capture_events (
        id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_sid TEXT NOT NULL,
        at       BIGINT NOT NULL,
        kind     TEXT NOT NULL,
        size     BIGINT NOT NULL,
        data     TEXT NOT NULL
    );
    CREATE INDEX capture_events_by_call ON capture_events (call_sid, id);
    CREATE TABLE capture_usage (
        id    BIGINT PRIMARY KEY CHECK (id = 1),
        bytes BIGINT NOT NULL
    );
    INSERT INTO capture_usage (id, bytes) VALUES (1, 0);
    "#,
    // 2 (SQLite's 11): nodes sharing the store, their heartbeats, and the node each call runs
    // on.
    r#"
    CREATE TABLE nodes (
        id           TEXT PRIMARY KEY,
        started_at   BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    );
    ALTER TABLE calls ADD COLUMN node_id TEXT;
    CREATE INDEX calls_by_node ON calls (node_id, status);
    "#,
    // 3 (SQLite's 12): the SIP trunks made through the REST API.
    r#"
    CREATE TABLE trunks (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        trunk_id         TEXT COLLATE "C" NOT NULL UNIQUE,
        account_sid      TEXT NOT NULL,
        host             TEXT NOT NULL,
        port             BIGINT,
        transport        TEXT NOT NULL,
        register         BOOLEAN NOT NULL,
        username         TEXT,
        password         TEXT,
        auth_id          TEXT,
        outbound_proxy   TEXT,
        register_expiry  BIGINT NOT NULL,
        delayed_offer    BOOLEAN NOT NULL,
        caller_id_name   TEXT,
        caller_id_number TEXT,
        addresses        TEXT NOT NULL,
        date_created     BIGINT NOT NULL,
        date_updated     BIGINT NOT NULL
    );
    "#,
    // 4 (SQLite's 13): where each node takes REST requests, for changes forwarded to a call's
    // node.
    "ALTER TABLE nodes ADD COLUMN api_url TEXT;",
    // 5 (SQLite's 14): the node whose registrar holds each binding and the node each
    // conference runs on, and where each node takes SIP.
    r#"
    ALTER TABLE sip_bindings ADD COLUMN node_id TEXT;
    CREATE INDEX sip_bindings_by_username ON sip_bindings (username, expires_at);
    ALTER TABLE conferences ADD COLUMN node_id TEXT;
    CREATE INDEX conferences_open_by_name ON conferences (friendly_name)
        WHERE status != 'completed';
    ALTER TABLE nodes ADD COLUMN sip_uri TEXT;
    "#,
];
