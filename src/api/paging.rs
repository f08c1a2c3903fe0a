//! Twilio's list paging: `PageSize` (default 50, at most 1000), `Page` (zero-based) and
//! `PageToken`, answered with `first_page_uri`, `next_page_uri`, `previous_page_uri`, `page`,
//! `page_size`, `start`, `end` and `uri` beside the list.
//!
//! Page tokens are keyset cursors in the listing order (`PA<nanos>_<sid>`: the rows after that
//! one; `PB...`: the rows before it), so every page of a million-row list costs the same. A
//! `Page` without a token falls back to an offset.
//!
//! Every `uri` is relative to the `2010-04-01` root, whichever root the request came through:
//! the helper libraries join it to their base URL, which already holds any prefix such as
//! `/api/laml`.

use chrono::DateTime;
use serde_json::{Value, json};

use super::error::ParamError;
use super::params::{Params, whole};
use crate::ids::Sid;
use crate::store::ListCursor;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageToken {
    /// The rows after this one (the next page).
    After(ListCursor),
    /// The rows before this one (the previous page).
    Before(ListCursor),
}

impl PageToken {
    fn encode(&self) -> String {
        let (prefix, cursor) = match self {
            PageToken::After(c) => ("PA", c),
            PageToken::Before(c) => ("PB", c),
        };
        format!(
            "{prefix}{}_{}",
            cursor.date_created.timestamp_nanos_opt().unwrap_or(0),
            cursor.sid
        )
    }

    /// Reads a token made by [`PageToken::encode`] for rows whose sids have `sid_prefix`.
    fn decode(text: &str, sid_prefix: &str) -> Option<PageToken> {
        let (direction, rest) = text.split_at_checked(2)?;
        let (nanos, sid) = rest.split_once('_')?;
        if !Sid::is_valid(sid_prefix, sid) {
            return None;
        }
        let cursor = ListCursor {
            date_created: DateTime::from_timestamp_nanos(nanos.parse().ok()?),
            sid: sid.to_owned(),
        };
        match direction {
            "PA" => Some(PageToken::After(cursor)),
            "PB" => Some(PageToken::Before(cursor)),
            _ => None,
        }
    }
}

/// The paging parameters of a list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub page: usize,
    pub page_size: usize,
    pub token: Option<PageToken>,
}

impl PageRequest {
    /// Reads `PageSize`, `Page` and `PageToken` (a token for sids with `sid_prefix`).
    pub fn parse(params: &Params, sid_prefix: &str) -> Result<PageRequest, ParamError> {
        let page_size = whole(params, "PageSize", "a whole number from 1 to 1000")?.map_or(
            DEFAULT_PAGE_SIZE,
            |n| {
                usize::try_from(n)
                    .unwrap_or(MAX_PAGE_SIZE)
                    .min(MAX_PAGE_SIZE)
            },
        );
        if page_size == 0 {
            return Err(ParamError::Invalid {
                name: "PageSize",
                value: "0".into(),
                expected: "a whole number from 1 to 1000",
            });
        }
        let page = whole(params, "Page", "a whole number from 0")?
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let token = params
            .get("PageToken")
            .map(|text| {
                PageToken::decode(text, sid_prefix).ok_or_else(|| ParamError::Invalid {
                    name: "PageToken",
                    value: text.to_owned(),
                    expected: "a token from a next_page_uri or previous_page_uri",
                })
            })
            .transpose()?;
        Ok(PageRequest {
            page,
            page_size,
            token,
        })
    }

    /// Rows to skip before the page: none with a token, `Page × PageSize` without one.
    pub fn offset(&self) -> usize {
        match self.token {
            Some(_) => 0,
            None => self.page.saturating_mul(self.page_size),
        }
    }

    /// Rows to read: one more than a page, to learn whether another page follows.
    pub fn limit(&self) -> usize {
        self.page_size + 1
    }

    pub fn after(&self) -> Option<ListCursor> {
        match &self.token {
            Some(PageToken::After(c)) => Some(c.clone()),
            _ => None,
        }
    }

    pub fn before(&self) -> Option<ListCursor> {
        match &self.token {
            Some(PageToken::Before(c)) => Some(c.clone()),
            _ => None,
        }
    }
}

/// A list as read (up to one row more than a page), turned into a page.
pub struct ListPage<'a, T> {
    /// The list's path, e.g. `/2010-04-01/Accounts/AC.../Calls.json`.
    pub path: String,
    /// The filter parameters of the request, echoed in every page URI.
    pub filters: Vec<(&'static str, &'a str)>,
    /// The JSON key of the list (`calls`, `recordings`).
    pub key: &'static str,
    pub request: &'a PageRequest,
    pub rows: Vec<T>,
}

impl<T> ListPage<'_, T> {
    /// The page body: the list under `key` rendered by `render`, and the paging fields. Its
    /// cursors come from `cursor`.
    pub fn into_json(
        self,
        cursor: impl Fn(&T) -> ListCursor,
        render: impl Fn(&T) -> Value,
    ) -> Value {
        let request = self.request;
        let mut rows = self.rows;
        let backwards = matches!(request.token, Some(PageToken::Before(_)));
        let extra = rows.len() > request.page_size;
        if extra {
            if backwards {
                rows.remove(0);
            } else {
                rows.truncate(request.page_size);
            }
        }
        let (has_next, has_previous) = if backwards {
            (true, extra)
        } else {
            (extra, request.page > 0)
        };
        let uri = |page: usize, token: Option<PageToken>| {
            let mut query: Vec<(&str, String)> = self
                .filters
                .iter()
                .map(|(n, v)| (*n, (*v).to_owned()))
                .collect();
            query.push(("PageSize", request.page_size.to_string()));
            query.push(("Page", page.to_string()));
            if let Some(token) = token {
                query.push(("PageToken", token.encode()));
            }
            let query = serde_urlencoded::to_string(&query).unwrap_or_default();
            format!("{}?{query}", self.path)
        };
        let next = match rows.last() {
            Some(last) if has_next => Value::String(uri(
                request.page.saturating_add(1),
                Some(PageToken::After(cursor(last))),
            )),
            _ => Value::Null,
        };
        let previous = match rows.first() {
            Some(first) if has_previous => Value::String(uri(
                request.page.saturating_sub(1),
                Some(PageToken::Before(cursor(first))),
            )),
            _ => Value::Null,
        };
        let start = request.page.saturating_mul(request.page_size);
        let end = start + rows.len().saturating_sub(1);
        let list: Vec<Value> = rows.iter().map(render).collect();
        json!({
            self.key: list,
            "end": end,
            "first_page_uri": uri(0, None),
            "next_page_uri": next,
            "page": request.page,
            "page_size": request.page_size,
            "previous_page_uri": previous,
            "start": start,
            "uri": uri(request.page, request.token.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(n: i64) -> ListCursor {
        ListCursor {
            date_created: DateTime::from_timestamp_nanos(1_700_000_000_000_000_000 + n),
            sid: format!("CA{n:032x}"),
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        for token in [PageToken::After(cursor(5)), PageToken::Before(cursor(6))] {
            assert_eq!(PageToken::decode(&token.encode(), "CA"), Some(token));
        }
        let good = PageToken::After(cursor(5)).encode();
        assert_eq!(PageToken::decode(&good, "RE"), None);
        for bad in ["", "PA", "PX1_CA", "PAx_CA00000000000000000000000000000005"] {
            assert_eq!(PageToken::decode(bad, "CA"), None, "{bad}");
        }
        let params = Params::parse("PageToken=nonsense");
        assert_eq!(PageRequest::parse(&params, "CA").unwrap_err().code(), 20001);
    }

    #[test]
    fn page_size_defaults_to_50_and_is_capped_at_1000() {
        let request = PageRequest::parse(&Params::default(), "CA").unwrap();
        assert_eq!((request.page, request.page_size), (0, 50));
        let request = PageRequest::parse(&Params::parse("PageSize=5000&Page=3"), "CA").unwrap();
        assert_eq!((request.page, request.page_size), (3, 1000));
        assert_eq!(request.offset(), 3000);
        assert!(PageRequest::parse(&Params::parse("PageSize=0"), "CA").is_err());
        assert!(PageRequest::parse(&Params::parse("PageSize=-1"), "CA").is_err());
    }

    fn page(request: &PageRequest, rows: Vec<i64>) -> Value {
        ListPage {
            path: "/2010-04-01/Accounts/AC1/Calls.json".into(),
            filters: vec![("Status", "completed"), ("StartTime<", "2024-01-01")],
            key: "calls",
            request,
            rows,
        }
        .into_json(|n| cursor(*n), |n| json!(n))
    }

    #[test]
    fn a_full_page_links_to_the_next_one_with_a_cursor_token() {
        let request = PageRequest::parse(&Params::parse("PageSize=2"), "CA").unwrap();
        let body = page(&request, vec![9, 8, 7]);
        assert_eq!(body["calls"], json!([9, 8]));
        assert_eq!(
            (body["start"].clone(), body["end"].clone()),
            (json!(0), json!(1))
        );
        assert_eq!(body["previous_page_uri"], Value::Null);
        assert_eq!(
            body["first_page_uri"],
            "/2010-04-01/Accounts/AC1/Calls.json?Status=completed&StartTime%3C=2024-01-01&PageSize=2&Page=0"
        );
        let next = body["next_page_uri"].as_str().unwrap();
        let token = PageToken::After(cursor(8)).encode();
        assert!(
            next.ends_with(&format!("&PageSize=2&Page=1&PageToken={token}")),
            "{next}"
        );

        let next_request =
            PageRequest::parse(&Params::parse(next.split_once('?').unwrap().1), "CA").unwrap();
        let body = page(&next_request, vec![7]);
        assert_eq!(body["next_page_uri"], Value::Null);
        assert_eq!(
            (body["start"].clone(), body["end"].clone()),
            (json!(2), json!(2))
        );
        let previous = body["previous_page_uri"].as_str().unwrap();
        assert!(previous.contains("&Page=0&PageToken=PB"), "{previous}");
    }

    #[test]
    fn a_backward_page_drops_its_newest_extra_row() {
        let request = PageRequest {
            page: 1,
            page_size: 2,
            token: Some(PageToken::Before(cursor(3))),
        };
        let body = page(&request, vec![6, 5, 4]);
        assert_eq!(body["calls"], json!([5, 4]));
        assert!(body["previous_page_uri"].is_string());
        assert!(body["next_page_uri"].is_string());
    }
}
