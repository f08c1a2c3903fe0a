//! The PostgreSQL backend of [`super::CallStore`] (`--store postgres://user@host:port/db`),
//! through `tokio-postgres` without TLS (a database on the node's network; use a socket or a
//! tunnel for anything else). It runs the same statements as SQLite ([`super::statements`]);
//! this file owns the connections, the bridge from the store's blocking threads to the async
//! driver, and the schema's versioning ([`schema`]).
//!
//! # Sync over async
//!
//! [`super::CallStore`] is synchronous: its methods run on the store's writer thread and on
//! tokio's blocking pool, and a few at start from wherever the store is opened (an async task
//! included). A `tokio-postgres` connection is two halves: the `Connection`, which owns the
//! socket and needs a tokio reactor, and the `Client`, whose requests only travel over channels
//! to it. So each store owns a small runtime of its own (one worker thread, `callml-postgres`)
//! that drives every `Connection`, and the calling thread waits for a `Client` request with
//! [`wait`], a park/unpark executor: no reactor is needed on the caller's side, so it works from
//! any thread, where `Handle::block_on` would panic inside an async context and
//! `block_in_place` on a current-thread runtime. Waiting blocks the calling thread exactly as a
//! SQLite call does.
//!
//! # Connections
//!
//! One writer connection (the writer thread's; transactions are `BEGIN` / `COMMIT` on it) and
//! up to [`MAX_IDLE_READERS`] idle read connections, opened on demand. Statements are prepared
//! once per connection and cached; SQLite's `?N` / `?` placeholders become `$N`. A connection
//! found closed (the server restarted, the network dropped) is discarded and the next use opens
//! a new one, so the store heals by itself once the database is back; in between, errors are
//! [`StoreError::is_unavailable`], which the writer turns into buffered retries (see
//! [`super`]).

mod schema;

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::StoreError;
use super::sql::{Cell, Columns, Db, Param};
use super::statements::SqlBackend;

/// Read connections kept open between queries.
const MAX_IDLE_READERS: usize = 4;
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Key of the advisory lock held while migrating, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6361_6c6c_6d6c; // "callml"

/// The PostgreSQL [`super::CallStore`].
pub struct PostgresStore {
    config: Config,
    /// The URL without its password, for messages.
    target: String,
    runtime: Option<tokio::runtime::Runtime>,
    writer: Mutex<Option<PgConnection>>,
    idle_readers: Mutex<Vec<PgConnection>>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`)
    /// and brings its schema up to date. Fails when the database cannot be reached.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let target = without_password(url);
        let mut config: Config = url.parse().map_err(|source| StoreError::Connect {
            target: target.clone(),
            source,
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("callml");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("callml-postgres")
            .enable_all()
            .build()
            .map_err(StoreError::SpawnWriter)?;
        let store = PostgresStore {
            config,
            target,
            runtime: Some(runtime),
            writer: Mutex::new(None),
            idle_readers: Mutex::new(Vec::new()),
        };
        let writer = store.open_connection()?;
        store.migrate(&writer)?;
        *lock(&store.writer) = Some(writer);
        Ok(store)
    }

    /// Where the store is, without its password.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn open_connection(&self) -> Result<PgConnection, StoreError> {
        let runtime = self.runtime.as_ref().ok_or(StoreError::Closed)?;
        let config = self.config.clone();
        let target = self.target.clone();
        let connecting = runtime.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, target, "PostgreSQL connection lost");
                }
            });
            Ok::<Client, tokio_postgres::Error>(client)
        });
        let client = wait(connecting)?.map_err(|source| StoreError::Connect {
            target: self.target.clone(),
            source,
        })?;
        Ok(PgConnection {
            client,
            statements: RefCell::new(HashMap::new()),
        })
    }

    fn migrate(&self, conn: &PgConnection) -> Result<(), StoreError> {
        let migration_error = |version, source| StoreError::PostgresMigrate { version, source };
        wait(conn.client.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
             CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL); COMMIT;"
        )))
        .map_err(|source| migration_error(0, source))?;
        let supported = schema::MIGRATIONS.len();
        for (index, sql) in schema::MIGRATIONS.iter().enumerate() {
            let version = index + 1;
            let run = async {
                conn.client
                    .batch_execute(&format!(
                        "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK});"
                    ))
                    .await?;
                let found: Option<i64> = conn
                    .client
                    .query_opt("SELECT version FROM schema_version", &[])
                    .await?
                    .map(|row| row.get(0));
                let found = found.unwrap_or(0);
                if found >= version as i64 {
                    conn.client.batch_execute("COMMIT").await?;
                    return Ok(found);
                }
                conn.client.batch_execute(sql).await?;
                conn.client
                    .batch_execute(&format!(
                        "DELETE FROM schema_version; \
                         INSERT INTO schema_version (version) VALUES ({version}); COMMIT;"
                    ))
                    .await?;
                Ok(version as i64)
            };
            let found = match wait(run) {
                Ok(found) => found,
                Err(source) => {
                    let _ = wait(conn.client.batch_execute("ROLLBACK"));
                    return Err(migration_error(version, source));
                }
            };
            if found > supported as i64 {
                return Err(StoreError::PostgresUnknownSchema {
                    target: self.target.clone(),
                    found,
                    supported,
                });
            }
        }
        Ok(())
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which is not allowed inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SqlBackend for PostgresStore {
    fn in_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Db) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut writer = lock(&self.writer);
        if writer.as_ref().is_none_or(|conn| conn.client.is_closed()) {
            *writer = None;
            *writer = Some(self.open_connection()?);
        }
        let Some(conn) = writer.as_ref() else {
            return Err(StoreError::Closed);
        };
        let done = wait(conn.client.batch_execute("BEGIN"))
            .map_err(StoreError::from)
            .and_then(|()| work(conn))
            .and_then(|()| Ok(wait(conn.client.batch_execute("COMMIT"))?));
        if done.is_err() {
            if conn.client.is_closed() {
                *writer = None;
            } else {
                let _ = wait(conn.client.batch_execute("ROLLBACK"));
            }
        }
        done
    }

    fn with_reader<T>(
        &self,
        query: impl FnOnce(&dyn Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = lock(&self.idle_readers).pop();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => self.open_connection()?,
        };
        let result = query(&conn);
        let mut idle = lock(&self.idle_readers);
        if idle.len() < MAX_IDLE_READERS && !conn.client.is_closed() {
            idle.push(conn);
        }
        result
    }

    fn close_backend(&self) -> Result<(), StoreError> {
        lock(&self.writer).take();
        lock(&self.idle_readers).clear();
        Ok(())
    }
}

/// A poisoned lock only means another thread panicked while holding it; an unfinished
/// transaction is rolled back at the next use of the writer connection.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `url` with its password, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// A client and its prepared statements (keyed by the statement as written).
struct PgConnection {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

impl PgConnection {
    fn prepare(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = wait(self.client.prepare(&numbered(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl Db for PgConnection {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(wait(self.client.execute(&statement, &params))?)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.prepare(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        for found in wait(self.client.query(&statement, &params))? {
            row(&found)?;
        }
        Ok(())
    }
}

/// `sql` with SQLite's placeholders (`?N`, or `?` numbered in order) written as `$N`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(digit) = chars.next_if(char::is_ascii_digit) {
            digits.push(digit);
        }
        if digits.is_empty() {
            next += 1;
            let _ = write!(out, "${next}");
        } else {
            out.push('$');
            out.push_str(&digits);
        }
    }
    out
}

impl Columns for tokio_postgres::Row {
    fn cell(&self, index: usize) -> Result<Cell, StoreError> {
        Ok(self.try_get::<_, Cell>(index)?)
    }
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Cell, Box<dyn Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Int(bool::from_sql(ty, raw)?.into()),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Cell, Box<dyn Error + Sync + Send>> {
        Ok(Cell::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
            || <String as FromSql>::accepts(ty)
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
                Type::BOOL => (value != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be stored as {ty}").into()),
            },
            Param::Text(text) => text.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL)
            || <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// Wakes the thread waiting in [`wait`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the calling thread, parking it between wake-ups. The
/// futures given here do no I/O themselves (the store's runtime does), so no reactor is needed.
fn wait<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ?1 AND b = ?12"), "a = $1 AND b = $12");
        assert_eq!(
            numbered("a = ? AND (b, c) < (?, ?)"),
            "a = $1 AND (b, c) < ($2, $3)"
        );
    }

    #[test]
    fn a_password_never_shows_in_messages() {
        assert_eq!(
            without_password("postgres://callml:secret@db:5432/calls"),
            "postgres://callml:***@db:5432/calls"
        );
        assert_eq!(
            without_password("postgres://callml@db/calls"),
            "postgres://callml@db/calls"
        );
    }
}
