//! The SQL both backends run, in one dialect-neutral form: statements are written once (SQLite's
//! `?N` / `?` placeholders, SQL that SQLite and PostgreSQL both accept) and run through [`Db`],
//! which each backend implements for its connection ([`super::sqlite`] as is, [`super::postgres`]
//! after turning placeholders into `$N`).
//!
//! Parameters are [`Param`]s borrowed from the records (no copy); row values are read as
//! [`Cell`]s through [`Columns`]. Integers are 64-bit on both sides; a boolean is stored as
//! SQLite's `INTEGER` 0/1 or PostgreSQL's `BOOLEAN`, and read back as 0/1 from either.

use super::StoreError;

/// One statement parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// A value that binds as a [`Param`].
pub(super) trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Int(i64::from(*self))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, bool);

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}

/// `[Param]` of the values, borrowed for the length of the statement that uses them.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::ToParam::to_param(&$value)),*] as &[$crate::store::sql::Param<'_>]
    };
}
pub(super) use params;

/// A row count as a `LIMIT` or `OFFSET` takes it: beyond `i64` means all.
pub(super) fn bounded(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// One value read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// The values of one row, by position.
pub(super) trait Columns {
    fn cell(&self, index: usize) -> Result<Cell, StoreError>;
}

impl dyn Columns + '_ {
    /// The value at `index` as a `T`.
    pub(super) fn get<T: FromCell>(&self, index: usize) -> Result<T, StoreError> {
        T::from_cell(self.cell(index)?)
    }
}

/// A type a [`Cell`] converts into.
pub(super) trait FromCell: Sized {
    fn from_cell(cell: Cell) -> Result<Self, StoreError>;
}

fn unexpected(cell: Cell) -> StoreError {
    StoreError::InvalidValue {
        column: "(column)",
        value: format!("{cell:?}"),
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell) -> Result<String, StoreError> {
        match cell {
            Cell::Text(text) => Ok(text),
            other => Err(unexpected(other)),
        }
    }
}

macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl FromCell for $t {
            fn from_cell(cell: Cell) -> Result<$t, StoreError> {
                match cell {
                    Cell::Int(value) => <$t>::try_from(value).map_err(|_| unexpected(cell)),
                    other => Err(unexpected(other)),
                }
            }
        }
    )*};
}
int_cell!(i64, u32, u16, u8);

impl FromCell for bool {
    fn from_cell(cell: Cell) -> Result<bool, StoreError> {
        match cell {
            Cell::Int(value) => Ok(value != 0),
            other => Err(unexpected(other)),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell) -> Result<Option<T>, StoreError> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// A connection (or an open transaction) that runs the shared statements.
pub(super) trait Db {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs a query and hands each row to `row`, in order.
    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        row: &mut dyn FnMut(&dyn Columns) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
}

/// Every row of a query, read by `read`.
pub(super) fn rows<T>(
    db: &dyn Db,
    sql: &str,
    params: &[Param<'_>],
    read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut found = Vec::new();
    db.query(sql, params, &mut |row| {
        found.push(read(row)?);
        Ok(())
    })?;
    Ok(found)
}

/// The first row of a query, if any, read by `read`.
pub(super) fn first<T>(
    db: &dyn Db,
    sql: &str,
    params: &[Param<'_>],
    read: impl Fn(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut found = None;
    db.query(sql, params, &mut |row| {
        if found.is_none() {
            found = Some(read(row)?);
        }
        Ok(())
    })?;
    Ok(found)
}
