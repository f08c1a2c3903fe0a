//! The SQL side of [`super::sip`], shared by both backends: its tables (migrations 6, 10 and 12 of
//! [`MIGRATIONS`](super::sqlite)), the statements that apply a [`SipWrite`], and the reads
//! that load every resource and binding at start.
//!
//! Deleting a domain removes its mappings and bindings; deleting a list removes its entries.
//! Whether a list may be deleted at all (not while a domain maps it) is the directory's rule,
//! checked before the write.

use super::sql::{Db, Param, params, rows};
use chrono::{DateTime, Utc};

use super::StoreError;
use super::sip::{
    ApplicationRecord, BindingRecord, CredentialListRecord, CredentialRecord, EndpointInfo,
    IncomingNumberRecord, IpAclRecord, IpAddressRecord, MappingKind, MappingRecord,
    SipDomainRecord, SipResources, SipWrite, TrunkRecord,
};
use crate::config::HttpMethod;
use crate::markup::ast::Keyword;
use crate::trunk::{AddressRange, Trunk};

/// Migration 12: the SIP trunks made through the REST API (`Trunks.json`). `addresses` holds
/// one address or CIDR range a line; `password` is kept as given (see [`TrunkRecord`]).
pub(super) const TRUNKS_MIGRATION: &str = r#"
    CREATE TABLE trunks (
        id               INTEGER PRIMARY KEY,
        trunk_id         TEXT NOT NULL UNIQUE,
        account_sid      TEXT NOT NULL,
        host             TEXT NOT NULL,
        port             INTEGER,
        transport        TEXT NOT NULL,
        register         INTEGER NOT NULL,
        username         TEXT,
        password         TEXT,
        auth_id          TEXT,
        outbound_proxy   TEXT,
        register_expiry  INTEGER NOT NULL,
        delayed_offer    INTEGER NOT NULL,
        caller_id_name   TEXT,
        caller_id_number TEXT,
        addresses        TEXT NOT NULL,
        date_created     INTEGER NOT NULL,
        date_updated     INTEGER NOT NULL
    );
"#;

/// Migration 9: the voice settings Twilio's Applications have besides the Bandwidth ones,
/// and the account's numbers (`IncomingPhoneNumbers`), looked up by `phone_number`.
pub(super) const NUMBERS_MIGRATION: &str = r#"
    ALTER TABLE applications ADD COLUMN voice_fallback_url TEXT;
    ALTER TABLE applications ADD COLUMN voice_fallback_method TEXT NOT NULL DEFAULT 'POST';
    ALTER TABLE applications ADD COLUMN status_callback TEXT;
    ALTER TABLE applications ADD COLUMN status_callback_method TEXT NOT NULL DEFAULT 'POST';
    CREATE TABLE incoming_numbers (
        id                     INTEGER PRIMARY KEY,
        sid                    TEXT NOT NULL UNIQUE,
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
        date_created           INTEGER NOT NULL,
        date_updated           INTEGER NOT NULL
    );
"#;

/// Migration 5: SIP domains, credential and IP lists, their mappings, the registrar's
/// bindings, and Bandwidth-shaped applications.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE sip_domains (
        id                           INTEGER PRIMARY KEY,
        sid                          TEXT NOT NULL UNIQUE,
        account_sid                  TEXT NOT NULL,
        domain_name                  TEXT NOT NULL UNIQUE,
        friendly_name                TEXT NOT NULL,
        voice_url                    TEXT,
        voice_method                 TEXT NOT NULL,
        voice_fallback_url           TEXT,
        voice_fallback_method        TEXT NOT NULL,
        voice_status_callback_url    TEXT,
        voice_status_callback_method TEXT NOT NULL,
        sip_registration             INTEGER NOT NULL,
        realm                        TEXT NOT NULL,
        endpoint_list_sid            TEXT,
        date_created                 INTEGER NOT NULL,
        date_updated                 INTEGER NOT NULL
    );
    CREATE TABLE sip_credential_lists (
        id            INTEGER PRIMARY KEY,
        sid           TEXT NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        date_created  INTEGER NOT NULL,
        date_updated  INTEGER NOT NULL
    );
    CREATE TABLE sip_credentials (
        id                       INTEGER PRIMARY KEY,
        sid                      TEXT NOT NULL UNIQUE,
        account_sid              TEXT NOT NULL,
        credential_list_sid      TEXT NOT NULL,
        username                 TEXT NOT NULL,
        realm                    TEXT NOT NULL,
        ha1_md5                  TEXT NOT NULL,
        ha1_sha256               TEXT NOT NULL,
        endpoint_domain_sid      TEXT,
        endpoint_description     TEXT,
        endpoint_application_sid TEXT,
        endpoint_enabled         INTEGER,
        date_created             INTEGER NOT NULL,
        date_updated             INTEGER NOT NULL,
        UNIQUE (credential_list_sid, username)
    );
    CREATE TABLE sip_ip_acls (
        id            INTEGER PRIMARY KEY,
        sid           TEXT NOT NULL UNIQUE,
        account_sid   TEXT NOT NULL,
        friendly_name TEXT NOT NULL,
        date_created  INTEGER NOT NULL,
        date_updated  INTEGER NOT NULL
    );
    CREATE TABLE sip_ip_addresses (
        id                         INTEGER PRIMARY KEY,
        sid                        TEXT NOT NULL UNIQUE,
        account_sid                TEXT NOT NULL,
        ip_access_control_list_sid TEXT NOT NULL,
        friendly_name              TEXT NOT NULL,
        ip_address                 TEXT NOT NULL,
        cidr_prefix_length         INTEGER NOT NULL,
        date_created               INTEGER NOT NULL,
        date_updated               INTEGER NOT NULL
    );
    CREATE TABLE sip_domain_mappings (
        domain_sid   TEXT NOT NULL,
        kind         TEXT NOT NULL,
        list_sid     TEXT NOT NULL,
        date_created INTEGER NOT NULL,
        PRIMARY KEY (domain_sid, kind, list_sid)
    );
    CREATE TABLE sip_bindings (
        id            INTEGER PRIMARY KEY,
        domain_sid    TEXT NOT NULL,
        username      TEXT NOT NULL,
        contact       TEXT NOT NULL,
        instance      TEXT,
        reg_id        INTEGER,
        call_id       TEXT NOT NULL,
        cseq          INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        transport     TEXT NOT NULL,
        source        TEXT NOT NULL,
        path          TEXT NOT NULL,
        user_agent    TEXT,
        registered_at INTEGER NOT NULL
    );
    CREATE INDEX sip_bindings_by_user ON sip_bindings (domain_sid, username);
    CREATE TABLE applications (
        id                INTEGER PRIMARY KEY,
        sid               TEXT NOT NULL UNIQUE,
        account_sid       TEXT NOT NULL,
        name              TEXT NOT NULL,
        incoming_call_url TEXT,
        callback_method   TEXT NOT NULL,
        auto_answer       INTEGER NOT NULL,
        date_created      INTEGER NOT NULL,
        date_updated      INTEGER NOT NULL
    );
"#;

fn nanos(time: DateTime<chrono::Utc>) -> Result<i64, StoreError> {
    time.timestamp_nanos_opt()
        .ok_or(StoreError::TimeOutOfRange(time))
}

fn method(text: String, column: &'static str) -> Result<HttpMethod, StoreError> {
    HttpMethod::from_keyword(&text).ok_or(StoreError::InvalidValue {
        column,
        value: text,
    })
}

fn time(nanos: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// Applies one write inside the writer's transaction.
pub(super) fn apply(db: &dyn Db, write: &SipWrite) -> Result<(), StoreError> {
    match write {
        SipWrite::SaveDomain(d) => {
            db.execute(
                "INSERT INTO sip_domains (sid, account_sid, domain_name, friendly_name, voice_url, \
                 voice_method, voice_fallback_url, voice_fallback_method, voice_status_callback_url, \
                 voice_status_callback_method, sip_registration, realm, endpoint_list_sid, \
                 date_created, date_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                 ON CONFLICT (sid) DO UPDATE SET domain_name = excluded.domain_name, \
                 friendly_name = excluded.friendly_name, voice_url = excluded.voice_url, \
                 voice_method = excluded.voice_method, voice_fallback_url = excluded.voice_fallback_url, \
                 voice_fallback_method = excluded.voice_fallback_method, \
                 voice_status_callback_url = excluded.voice_status_callback_url, \
                 voice_status_callback_method = excluded.voice_status_callback_method, \
                 sip_registration = excluded.sip_registration, realm = excluded.realm, \
                 endpoint_list_sid = excluded.endpoint_list_sid, date_updated = excluded.date_updated",
                params![
                d.sid,
                d.account_sid,
                d.domain_name,
                d.friendly_name,
                d.voice_url,
                d.voice_method.keyword(),
                d.voice_fallback_url,
                d.voice_fallback_method.keyword(),
                d.voice_status_callback_url,
                d.voice_status_callback_method.keyword(),
                d.sip_registration,
                d.realm,
                d.endpoint_list_sid,
                nanos(d.date_created)?,
                nanos(d.date_updated)?,
            ])?;
        }
        SipWrite::DeleteDomain(sid) => {
            for sql in [
                "DELETE FROM sip_domains WHERE sid = ?1",
                "DELETE FROM sip_domain_mappings WHERE domain_sid = ?1",
                "DELETE FROM sip_bindings WHERE domain_sid = ?1",
            ] {
                db.execute(sql, params![sid])?;
            }
        }
        SipWrite::SaveCredentialList(l) => {
            db.execute(
                "INSERT INTO sip_credential_lists (sid, account_sid, friendly_name, date_created, \
                 date_updated) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sid) DO UPDATE SET \
                 friendly_name = excluded.friendly_name, date_updated = excluded.date_updated",
                params![
                    l.sid,
                    l.account_sid,
                    l.friendly_name,
                    nanos(l.date_created)?,
                    nanos(l.date_updated)?,
                ],
            )?;
        }
        SipWrite::DeleteCredentialList(sid) => {
            for sql in [
                "DELETE FROM sip_credential_lists WHERE sid = ?1",
                "DELETE FROM sip_credentials WHERE credential_list_sid = ?1",
            ] {
                db.execute(sql, params![sid])?;
            }
        }
        SipWrite::SaveCredential(c) => {
            let endpoint = c.endpoint.as_ref();
            db.execute(
                "INSERT INTO sip_credentials (sid, account_sid, credential_list_sid, username, realm, \
                 ha1_md5, ha1_sha256, endpoint_domain_sid, endpoint_description, \
                 endpoint_application_sid, endpoint_enabled, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (sid) DO UPDATE SET realm = excluded.realm, ha1_md5 = excluded.ha1_md5, \
                 ha1_sha256 = excluded.ha1_sha256, endpoint_description = excluded.endpoint_description, \
                 endpoint_application_sid = excluded.endpoint_application_sid, \
                 endpoint_enabled = excluded.endpoint_enabled, date_updated = excluded.date_updated",
                params![
                c.sid,
                c.account_sid,
                c.credential_list_sid,
                c.username,
                c.realm,
                c.ha1_md5,
                c.ha1_sha256,
                endpoint.map(|e| &e.domain_sid),
                endpoint.map(|e| &e.description),
                endpoint.and_then(|e| e.application_sid.as_ref()),
                endpoint.map(|e| e.enabled),
                nanos(c.date_created)?,
                nanos(c.date_updated)?,
            ])?;
        }
        SipWrite::DeleteCredential(sid) => {
            db.execute("DELETE FROM sip_credentials WHERE sid = ?1", params![sid])?;
        }
        SipWrite::SaveIpAcl(l) => {
            db.execute(
                "INSERT INTO sip_ip_acls (sid, account_sid, friendly_name, date_created, \
                 date_updated) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sid) DO UPDATE SET \
                 friendly_name = excluded.friendly_name, date_updated = excluded.date_updated",
                params![
                    l.sid,
                    l.account_sid,
                    l.friendly_name,
                    nanos(l.date_created)?,
                    nanos(l.date_updated)?,
                ],
            )?;
        }
        SipWrite::DeleteIpAcl(sid) => {
            for sql in [
                "DELETE FROM sip_ip_acls WHERE sid = ?1",
                "DELETE FROM sip_ip_addresses WHERE ip_access_control_list_sid = ?1",
            ] {
                db.execute(sql, params![sid])?;
            }
        }
        SipWrite::SaveIpAddress(a) => {
            db.execute(
                "INSERT INTO sip_ip_addresses (sid, account_sid, ip_access_control_list_sid, \
                 friendly_name, ip_address, cidr_prefix_length, date_created, date_updated) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (sid) DO UPDATE SET \
                 friendly_name = excluded.friendly_name, ip_address = excluded.ip_address, \
                 cidr_prefix_length = excluded.cidr_prefix_length, date_updated = excluded.date_updated",
                params![
                a.sid,
                a.account_sid,
                a.ip_access_control_list_sid,
                a.friendly_name,
                a.ip_address,
                a.cidr_prefix_length,
                nanos(a.date_created)?,
                nanos(a.date_updated)?,
            ])?;
        }
        SipWrite::DeleteIpAddress(sid) => {
            db.execute("DELETE FROM sip_ip_addresses WHERE sid = ?1", params![sid])?;
        }
        SipWrite::SaveMapping(m) => {
            db.execute(
                "INSERT INTO sip_domain_mappings (domain_sid, kind, list_sid, date_created) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![
                    m.domain_sid,
                    m.kind.as_str(),
                    m.list_sid,
                    nanos(m.date_created)?
                ],
            )?;
        }
        SipWrite::DeleteMapping {
            domain_sid,
            kind,
            list_sid,
        } => {
            db.execute(
                "DELETE FROM sip_domain_mappings WHERE domain_sid = ?1 AND kind = ?2 AND list_sid = ?3",
                params![domain_sid, kind.as_str(), list_sid])?;
        }
        SipWrite::SaveApplication(a) => {
            db.execute(
                "INSERT INTO applications (sid, account_sid, name, incoming_call_url, \
                 callback_method, auto_answer, date_created, date_updated, voice_fallback_url, \
                 voice_fallback_method, status_callback, status_callback_method) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (sid) DO UPDATE SET \
                 name = excluded.name, incoming_call_url = excluded.incoming_call_url, \
                 callback_method = excluded.callback_method, auto_answer = excluded.auto_answer, \
                 date_updated = excluded.date_updated, \
                 voice_fallback_url = excluded.voice_fallback_url, \
                 voice_fallback_method = excluded.voice_fallback_method, \
                 status_callback = excluded.status_callback, \
                 status_callback_method = excluded.status_callback_method",
                params![
                    a.sid,
                    a.account_sid,
                    a.name,
                    a.incoming_call_url,
                    a.callback_method.keyword(),
                    a.auto_answer,
                    nanos(a.date_created)?,
                    nanos(a.date_updated)?,
                    a.voice_fallback_url,
                    a.voice_fallback_method.keyword(),
                    a.status_callback,
                    a.status_callback_method.keyword(),
                ],
            )?;
        }
        SipWrite::DeleteApplication(sid) => {
            db.execute("DELETE FROM applications WHERE sid = ?1", params![sid])?;
        }
        SipWrite::SaveNumber(n) => {
            db.execute(
                "INSERT INTO incoming_numbers (sid, account_sid, phone_number, friendly_name, \
                 voice_url, voice_method, voice_fallback_url, voice_fallback_method, \
                 status_callback, status_callback_method, voice_application_sid, date_created, \
                 date_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (sid) DO UPDATE SET phone_number = excluded.phone_number, \
                 friendly_name = excluded.friendly_name, voice_url = excluded.voice_url, \
                 voice_method = excluded.voice_method, \
                 voice_fallback_url = excluded.voice_fallback_url, \
                 voice_fallback_method = excluded.voice_fallback_method, \
                 status_callback = excluded.status_callback, \
                 status_callback_method = excluded.status_callback_method, \
                 voice_application_sid = excluded.voice_application_sid, \
                 date_updated = excluded.date_updated",
                params![
                    n.sid,
                    n.account_sid,
                    n.phone_number,
                    n.friendly_name,
                    n.voice_url,
                    n.voice_method.keyword(),
                    n.voice_fallback_url,
                    n.voice_fallback_method.keyword(),
                    n.status_callback,
                    n.status_callback_method.keyword(),
                    n.voice_application_sid,
                    nanos(n.date_created)?,
                    nanos(n.date_updated)?,
                ],
            )?;
        }
        SipWrite::DeleteNumber(sid) => {
            db.execute("DELETE FROM incoming_numbers WHERE sid = ?1", params![sid])?;
        }
        SipWrite::SaveTrunk(record) => save_trunk(db, record)?,
        SipWrite::DeleteTrunk(id) => {
            db.execute("DELETE FROM trunks WHERE trunk_id = ?1", params![id])?;
        }
        SipWrite::ReplaceBindings {
            domain_sid,
            username,
            bindings,
            node_id,
        } => {
            db.execute(
                "DELETE FROM sip_bindings WHERE domain_sid = ?1 AND username = ?2 \
                 AND (node_id = ?3 OR node_id IS NULL)",
                params![domain_sid, username, node_id],
            )?;
            for b in bindings {
                db.execute(
                    "INSERT INTO sip_bindings (domain_sid, username, contact, instance, reg_id, \
                     call_id, cseq, expires_at, transport, source, path, user_agent, \
                     registered_at, node_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        b.domain_sid,
                        b.username,
                        b.contact,
                        b.instance,
                        b.reg_id,
                        b.call_id,
                        b.cseq,
                        nanos(b.expires_at)?,
                        b.transport,
                        b.source,
                        b.path.join("\n"),
                        b.user_agent,
                        nanos(b.registered_at)?,
                        node_id,
                    ],
                )?;
            }
        }
    }
    Ok(())
}

/// Every SIP resource, each kind oldest first.
pub(super) fn load(db: &dyn Db) -> Result<SipResources, StoreError> {
    let domains = rows(
        db,
        "SELECT sid, account_sid, domain_name, friendly_name, voice_url, voice_method, \
         voice_fallback_url, voice_fallback_method, voice_status_callback_url, \
         voice_status_callback_method, sip_registration, realm, endpoint_list_sid, date_created, \
         date_updated FROM sip_domains ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(SipDomainRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                domain_name: r.get(2)?,
                friendly_name: r.get(3)?,
                voice_url: r.get(4)?,
                voice_method: method(r.get(5)?, "voice_method")?,
                voice_fallback_url: r.get(6)?,
                voice_fallback_method: method(r.get(7)?, "voice_fallback_method")?,
                voice_status_callback_url: r.get(8)?,
                voice_status_callback_method: method(r.get(9)?, "voice_status_callback_method")?,
                sip_registration: r.get(10)?,
                realm: r.get(11)?,
                endpoint_list_sid: r.get(12)?,
                date_created: time(r.get(13)?),
                date_updated: time(r.get(14)?),
            })
        },
    )?;
    let credential_lists = rows(
        db,
        "SELECT sid, account_sid, friendly_name, date_created, date_updated \
         FROM sip_credential_lists ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(CredentialListRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                friendly_name: r.get(2)?,
                date_created: time(r.get(3)?),
                date_updated: time(r.get(4)?),
            })
        },
    )?;
    let credentials = rows(
        db,
        "SELECT sid, account_sid, credential_list_sid, username, realm, ha1_md5, ha1_sha256, \
         endpoint_domain_sid, endpoint_description, endpoint_application_sid, endpoint_enabled, \
         date_created, date_updated FROM sip_credentials ORDER BY date_created, sid",
        &[],
        |r| {
            let endpoint = match r.get::<Option<String>>(7)? {
                Some(domain_sid) => Some(EndpointInfo {
                    domain_sid,
                    description: r.get::<Option<String>>(8)?.unwrap_or_default(),
                    application_sid: r.get(9)?,
                    enabled: r.get::<Option<bool>>(10)?.unwrap_or(true),
                }),
                None => None,
            };
            Ok(CredentialRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                credential_list_sid: r.get(2)?,
                username: r.get(3)?,
                realm: r.get(4)?,
                ha1_md5: r.get(5)?,
                ha1_sha256: r.get(6)?,
                endpoint,
                date_created: time(r.get(11)?),
                date_updated: time(r.get(12)?),
            })
        },
    )?;
    let ip_acls = rows(
        db,
        "SELECT sid, account_sid, friendly_name, date_created, date_updated \
         FROM sip_ip_acls ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(IpAclRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                friendly_name: r.get(2)?,
                date_created: time(r.get(3)?),
                date_updated: time(r.get(4)?),
            })
        },
    )?;
    let ip_addresses = rows(
        db,
        "SELECT sid, account_sid, ip_access_control_list_sid, friendly_name, ip_address, \
         cidr_prefix_length, date_created, date_updated FROM sip_ip_addresses \
         ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(IpAddressRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                ip_access_control_list_sid: r.get(2)?,
                friendly_name: r.get(3)?,
                ip_address: r.get(4)?,
                cidr_prefix_length: r.get(5)?,
                date_created: time(r.get(6)?),
                date_updated: time(r.get(7)?),
            })
        },
    )?;
    let mappings = rows(
        db,
        "SELECT domain_sid, kind, list_sid, date_created FROM sip_domain_mappings \
         ORDER BY date_created, list_sid",
        &[],
        |r| {
            let kind: String = r.get(1)?;
            Ok(MappingRecord {
                domain_sid: r.get(0)?,
                kind: MappingKind::parse(&kind).ok_or(StoreError::InvalidValue {
                    column: "kind",
                    value: kind,
                })?,
                list_sid: r.get(2)?,
                date_created: time(r.get(3)?),
            })
        },
    )?;
    let applications = rows(
        db,
        "SELECT sid, account_sid, name, incoming_call_url, callback_method, auto_answer, \
         date_created, date_updated, voice_fallback_url, voice_fallback_method, \
         status_callback, status_callback_method FROM applications ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(ApplicationRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                name: r.get(2)?,
                incoming_call_url: r.get(3)?,
                callback_method: method(r.get(4)?, "callback_method")?,
                auto_answer: r.get(5)?,
                date_created: time(r.get(6)?),
                date_updated: time(r.get(7)?),
                voice_fallback_url: r.get(8)?,
                voice_fallback_method: method(r.get(9)?, "voice_fallback_method")?,
                status_callback: r.get(10)?,
                status_callback_method: method(r.get(11)?, "status_callback_method")?,
            })
        },
    )?;
    let numbers = rows(
        db,
        "SELECT sid, account_sid, phone_number, friendly_name, voice_url, voice_method, \
         voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
         voice_application_sid, date_created, date_updated FROM incoming_numbers \
         ORDER BY date_created, sid",
        &[],
        |r| {
            Ok(IncomingNumberRecord {
                sid: r.get(0)?,
                account_sid: r.get(1)?,
                phone_number: r.get(2)?,
                friendly_name: r.get(3)?,
                voice_url: r.get(4)?,
                voice_method: method(r.get(5)?, "voice_method")?,
                voice_fallback_url: r.get(6)?,
                voice_fallback_method: method(r.get(7)?, "voice_fallback_method")?,
                status_callback: r.get(8)?,
                status_callback_method: method(r.get(9)?, "status_callback_method")?,
                voice_application_sid: r.get(10)?,
                date_created: time(r.get(11)?),
                date_updated: time(r.get(12)?),
            })
        },
    )?;
    let trunks = rows(
        db,
        "SELECT trunk_id, account_sid, host, port, transport, register, username, password, \
         auth_id, outbound_proxy, register_expiry, delayed_offer, caller_id_name, \
         caller_id_number, addresses, date_created, date_updated FROM trunks \
         ORDER BY date_created, trunk_id",
        &[],
        read_trunk,
    )?;
    Ok(SipResources {
        trunks,
        domains,
        credential_lists,
        credentials,
        ip_acls,
        ip_addresses,
        mappings,
        applications,
        numbers,
    })
}

fn save_trunk(db: &dyn Db, record: &TrunkRecord) -> Result<(), StoreError> {
    let t = &record.trunk;
    let addresses: Vec<String> = t.addresses.iter().map(ToString::to_string).collect();
    db.execute(
        "INSERT INTO trunks (trunk_id, account_sid, host, port, transport, register, username, \
         password, auth_id, outbound_proxy, register_expiry, delayed_offer, caller_id_name, \
         caller_id_number, addresses, date_created, date_updated) VALUES (?1, ?2, ?3, ?4, ?5, \
         ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
         ON CONFLICT (trunk_id) DO UPDATE SET host = excluded.host, port = excluded.port, \
         transport = excluded.transport, register = excluded.register, \
         username = excluded.username, password = excluded.password, \
         auth_id = excluded.auth_id, outbound_proxy = excluded.outbound_proxy, \
         register_expiry = excluded.register_expiry, delayed_offer = excluded.delayed_offer, \
         caller_id_name = excluded.caller_id_name, \
         caller_id_number = excluded.caller_id_number, addresses = excluded.addresses, \
         date_updated = excluded.date_updated",
        params![
            t.id,
            record.account_sid,
            t.host,
            t.port,
            t.transport.as_str(),
            t.register,
            t.username,
            t.password,
            t.auth_id,
            t.outbound_proxy,
            t.register_expiry,
            t.delayed_offer,
            t.caller_id_name,
            t.caller_id_number,
            addresses.join("\n"),
            nanos(record.date_created)?,
            nanos(record.date_updated)?,
        ],
    )?;
    Ok(())
}

fn read_trunk(r: &dyn super::sql::Columns) -> Result<TrunkRecord, StoreError> {
    let transport: String = r.get(4)?;
    let addresses: String = r.get(14)?;
    let addresses = addresses
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.parse::<AddressRange>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::InvalidValue {
            column: "addresses",
            value: addresses.clone(),
        })?;
    Ok(TrunkRecord {
        account_sid: r.get(1)?,
        trunk: Trunk {
            id: r.get(0)?,
            host: r.get(2)?,
            port: r.get(3)?,
            transport: transport.parse().map_err(|()| StoreError::InvalidValue {
                column: "transport",
                value: transport.clone(),
            })?,
            register: r.get(5)?,
            username: r.get(6)?,
            password: r.get(7)?,
            auth_id: r.get(8)?,
            outbound_proxy: r.get(9)?,
            register_expiry: r.get(10)?,
            delayed_offer: r.get(11)?,
            caller_id_name: r.get(12)?,
            caller_id_number: r.get(13)?,
            addresses,
        },
        date_created: time(r.get(15)?),
        date_updated: time(r.get(16)?),
    })
}

/// Every stored binding.
pub(super) fn bindings(db: &dyn Db) -> Result<Vec<BindingRecord>, StoreError> {
    read_bindings(db, "", &[])
}

/// The bindings of `username` in any domain, whichever node holds them, that have not
/// expired at `now`.
pub(super) fn bindings_of_user(
    db: &dyn Db,
    username: &str,
    now: DateTime<Utc>,
) -> Result<Vec<BindingRecord>, StoreError> {
    read_bindings(
        db,
        "WHERE username = ?1 AND expires_at > ?2",
        params![username, nanos(now)?],
    )
}

fn read_bindings(
    db: &dyn Db,
    filter: &str,
    params: &[Param<'_>],
) -> Result<Vec<BindingRecord>, StoreError> {
    rows(
        db,
        &format!(
            "SELECT domain_sid, username, contact, instance, reg_id, call_id, cseq, expires_at, \
             transport, source, path, user_agent, registered_at, node_id FROM sip_bindings \
             {filter} ORDER BY id"
        ),
        params,
        |r| {
            let path: String = r.get(10)?;
            Ok(BindingRecord {
                domain_sid: r.get(0)?,
                username: r.get(1)?,
                contact: r.get(2)?,
                instance: r.get(3)?,
                reg_id: r.get(4)?,
                call_id: r.get(5)?,
                cseq: r.get(6)?,
                expires_at: time(r.get(7)?),
                transport: r.get(8)?,
                source: r.get(9)?,
                path: path
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
                user_agent: r.get(11)?,
                registered_at: time(r.get(12)?),
                node_id: r.get(13)?,
            })
        },
    )
}
