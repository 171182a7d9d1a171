//! A job's error history, bounded: a job that fails thousands of times keeps a fixed number of
//! attempts, each of a bounded size, so recording a failure costs the same on the first attempt
//! and on the ten-thousandth (an unbounded history was rewritten whole on every failure).

use crate::job::AttemptError;

/// Attempts kept from the start of the history: the first failure often explains the rest.
pub const ERROR_HISTORY_FIRST: usize = 1;
/// Most recent attempts kept, after the first ones.
pub const ERROR_HISTORY_LATEST: usize = 9;
/// Longest error type kept, in bytes.
pub const MAX_ERROR_TYPE_BYTES: usize = 200;
/// Longest error message kept, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2 * 1024;
/// Longest traceback kept, in bytes.
pub const MAX_TRACEBACK_BYTES: usize = 8 * 1024;

/// The history after appending `latest` to `previous`: the first [`ERROR_HISTORY_FIRST`] and
/// the last [`ERROR_HISTORY_LATEST`] attempts, oldest first, each truncated by
/// [`truncate_error`]. Attempts in between are dropped; their numbers show the gap.
pub fn capped_history(previous: &[AttemptError], latest: AttemptError) -> Vec<AttemptError> {
    let total = previous.len() + 1;
    // How many attempts after the first ones fall out of the window.
    let dropped = total.saturating_sub(ERROR_HISTORY_FIRST + ERROR_HISTORY_LATEST);
    let mut history: Vec<AttemptError> = previous
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < ERROR_HISTORY_FIRST || *i >= ERROR_HISTORY_FIRST + dropped)
        .map(|(_, error)| truncate_error(error.clone()))
        .collect();
    history.push(truncate_error(latest));
    history
}

/// `error` with its type, message and traceback cut to their limits
/// ([`MAX_ERROR_TYPE_BYTES`], [`MAX_ERROR_MESSAGE_BYTES`], [`MAX_TRACEBACK_BYTES`]).
pub fn truncate_error(error: AttemptError) -> AttemptError {
    AttemptError {
        kind: truncate(error.kind, MAX_ERROR_TYPE_BYTES),
        message: truncate(error.message, MAX_ERROR_MESSAGE_BYTES),
        traceback: error.traceback.map(|t| truncate(t, MAX_TRACEBACK_BYTES)),
        ..error
    }
}

/// `text` if it fits in `limit` bytes; else its start and its end around a marker saying how
/// much was cut, `limit` bytes at most. Both ends are kept because tracebacks put the failing
/// frame last (Python) or first (Rust, Java).
pub fn truncate(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    // The marker's length depends on the number in it; allow for the longest.
    let room = limit.saturating_sub(marker(text.len()).len());
    if room == 0 {
        return text[..floor_char_boundary(&text, limit)].to_owned();
    }
    let head = floor_char_boundary(&text, room / 2);
    let tail = ceil_char_boundary(&text, text.len() - (room - room / 2));
    let cut = tail - head;
    let mut out = String::with_capacity(limit);
    out.push_str(&text[..head]);
    out.push_str(&marker(cut));
    out.push_str(&text[tail..]);
    out
}

fn marker(cut: usize) -> String {
    format!("\n… [{cut} bytes truncated] …\n")
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// The smallest char boundary at or above `at`.
fn ceil_char_boundary(text: &str, at: usize) -> usize {
    (at..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(attempt: u32) -> AttemptError {
        AttemptError {
            attempt,
            kind: "Boom".into(),
            message: format!("attempt {attempt}"),
            traceback: None,
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn attempts(history: &[AttemptError]) -> Vec<u32> {
        history.iter().map(|e| e.attempt).collect()
    }

    #[test]
    fn short_histories_are_kept_whole() {
        let mut history = Vec::new();
        for attempt in 1..=10 {
            history = capped_history(&history, error(attempt));
        }
        assert_eq!(attempts(&history), (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn long_histories_keep_the_first_and_the_latest() {
        let mut history = Vec::new();
        for attempt in 1..=25 {
            history = capped_history(&history, error(attempt));
        }
        assert_eq!(attempts(&history), [1, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    }

    #[test]
    fn an_oversized_history_read_back_is_capped_too() {
        let previous: Vec<_> = (1..=100).map(error).collect();
        let history = capped_history(&previous, error(101));
        assert_eq!(
            attempts(&history),
            [1, 93, 94, 95, 96, 97, 98, 99, 100, 101]
        );
    }

    #[test]
    fn long_texts_keep_both_ends_within_the_limit() {
        let text = format!("start{}end", "é".repeat(10_000));
        let cut = truncate(text.clone(), 100);
        assert!(cut.len() <= 100, "{} bytes", cut.len());
        assert!(cut.starts_with("start") && cut.ends_with("end"), "{cut}");
        assert!(cut.contains("bytes truncated"), "{cut}");
        assert_eq!(truncate("short".into(), 100), "short");
    }

    #[test]
    fn every_field_of_an_error_is_bounded() {
        let big = "x".repeat(1 << 20);
        let cut = truncate_error(AttemptError {
            kind: big.clone(),
            message: big.clone(),
            traceback: Some(big),
            ..error(1)
        });
        assert!(cut.kind.len() <= MAX_ERROR_TYPE_BYTES);
        assert!(cut.message.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(cut.traceback.unwrap().len() <= MAX_TRACEBACK_BYTES);
    }
}
