//! Paging of the listings ordered by name or id (`GET /v1/queues`, `/v1/cron`,
//! `/v1/workers`): at most `limit` entries and at most the server's byte budget for a page,
//! continued `after` the last entry of the previous page.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::error::ApiError;

/// Most entries in one page, and the default.
pub const MAX_PAGE: usize = 1000;

/// Longest `after` accepted: far more than any name or id.
const MAX_CURSOR_BYTES: usize = 1024;

/// `limit` and `after` of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page: the page starts after this name (or id).
    pub after: Option<String>,
}

impl PageParams {
    /// The page size, checked.
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(MAX_PAGE);
        if (1..=MAX_PAGE).contains(&limit) {
            return Ok(limit);
        }
        Err(invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ))
    }

    /// Where the page starts, checked.
    fn after(&self) -> Result<Option<&str>, ApiError> {
        match self.after.as_deref() {
            Some(after) if after.is_empty() || after.len() > MAX_CURSOR_BYTES => Err(invalid(
                "after",
                format!("after must be a next_cursor: 1 to {MAX_CURSOR_BYTES} bytes"),
            )),
            after => Ok(after),
        }
    }
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field(field)
}

/// One page of a listing and where the next one starts (`None` on the last).
#[derive(Debug)]
pub struct Page<T> {
    /// The entries, in order.
    pub items: Vec<T>,
    /// The key of the last entry, when more follow.
    pub next_cursor: Option<String>,
}

/// The page of `items` that `params` ask for: `items` are sorted by `key` here, the page
/// holds those after `params.after`, at most `params.limit` of them and at most `budget`
/// bytes of JSON (but always one, however large, so a listing makes progress).
pub fn page<T: Serialize>(
    mut items: Vec<T>,
    params: &PageParams,
    budget: usize,
    key: impl Fn(&T) -> &str,
) -> Result<Page<T>, ApiError> {
    let limit = params.limit()?;
    let after = params.after()?;
    items.sort_by(|a, b| key(a).cmp(key(b)));
    let start = after.map_or(0, |after| items.partition_point(|item| key(item) <= after));
    let mut items = items.split_off(start);
    let mut bytes = 0;
    let mut taken = 0;
    for item in &items {
        if taken == limit {
            break;
        }
        bytes += json_len(item) + 1;
        if taken > 0 && bytes > budget {
            break;
        }
        taken += 1;
    }
    let more = taken < items.len();
    items.truncate(taken);
    let next_cursor = more
        .then(|| items.last().map(|item| key(item).to_owned()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// How many bytes `value` takes as JSON, without writing it anywhere.
fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising these types fails only on a writer error, and Count has none.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<usize>, after: Option<&str>) -> PageParams {
        PageParams {
            limit,
            after: after.map(str::to_owned),
        }
    }

    fn names(page: &Page<String>) -> Vec<&str> {
        page.items.iter().map(String::as_str).collect()
    }

    fn letters() -> Vec<String> {
        ["d", "b", "a", "e", "c"].map(str::to_owned).to_vec()
    }

    #[test]
    fn pages_follow_their_cursors_in_order() {
        let first = page(letters(), &params(Some(2), None), usize::MAX, |s| s).unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.next_cursor.as_deref(), Some("b"));
        let second = page(letters(), &params(Some(2), Some("b")), usize::MAX, |s| s).unwrap();
        assert_eq!(names(&second), ["c", "d"]);
        let last = page(letters(), &params(Some(2), Some("d")), usize::MAX, |s| s).unwrap();
        assert_eq!(names(&last), ["e"]);
        assert_eq!(last.next_cursor, None);
        // A cursor between entries (one deleted since) continues after it.
        let gap = page(letters(), &params(None, Some("bb")), usize::MAX, |s| s).unwrap();
        assert_eq!(names(&gap), ["c", "d", "e"]);
    }

    #[test]
    fn a_page_stops_at_the_byte_budget_but_holds_one_entry() {
        // Each entry is `"x",`: 4 bytes.
        let cut = page(letters(), &params(None, None), 9, |s| s).unwrap();
        assert_eq!(names(&cut), ["a", "b"]);
        assert_eq!(cut.next_cursor.as_deref(), Some("b"));
        let one = page(letters(), &params(None, None), 1, |s| s).unwrap();
        assert_eq!(names(&one), ["a"]);
    }

    #[test]
    fn bad_limits_and_cursors_are_refused() {
        for bad in [params(Some(0), None), params(Some(1001), None)] {
            assert!(page(letters(), &bad, usize::MAX, |s| s).is_err());
        }
        let long = "x".repeat(MAX_CURSOR_BYTES + 1);
        for bad in [params(None, Some("")), params(None, Some(&long))] {
            assert!(page(letters(), &bad, usize::MAX, |s| s).is_err());
        }
    }
}
