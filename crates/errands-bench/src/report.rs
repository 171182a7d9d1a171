//! The results: one row per figure, each with its target and verdict, printed as a markdown
//! table, followed by notes on what the server and the bench were doing meanwhile.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::backend::Backend;

/// How a figure is shown.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    /// Jobs per second.
    JobsPerSec,
    /// Milliseconds.
    Millis,
    /// Megabytes (10^6 bytes).
    Megabytes,
    /// A plain ratio of two figures.
    Ratio,
    /// A count of things (rows, tuples).
    Count,
}

impl Unit {
    /// `value` written in this unit, e.g. `212,345 jobs/s` or `0.412 ms`.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::JobsPerSec => format!("{} jobs/s", thousands(value.round() as u64)),
            Unit::Millis => format!("{value:.3} ms"),
            Unit::Megabytes => format!("{value:.1} MB"),
            Unit::Ratio => format!("{value:.2}"),
            Unit::Count => thousands(value.round() as u64),
        }
    }

    /// `value` as a bound in this unit, shown without needless decimals (`1 ms`, `300 MB`).
    fn bound(self, value: f64) -> String {
        match self {
            Unit::JobsPerSec => format!("{} jobs/s", thousands(value.round() as u64)),
            Unit::Millis => format!("{value} ms"),
            Unit::Megabytes => format!("{value} MB"),
            Unit::Ratio => format!("{value:.2}"),
            Unit::Count => thousands(value.round() as u64),
        }
    }
}

/// What a figure is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// No target: the figure is there to compare with others.
    None,
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be below this.
    Below(f64),
}

/// One figure of one scenario.
#[derive(Clone, Debug)]
pub struct Row {
    /// The scenario, e.g. `batch enqueue, 1,000 per request`.
    pub scenario: String,
    /// The store it ran on, e.g. `SQLite`, or `PostgreSQL / SQLite` for a ratio of the two;
    /// empty when the scenario says it.
    pub store: String,
    /// What was measured, e.g. `rate` or `p99`.
    pub metric: String,
    /// The measured value, in `unit`.
    pub value: f64,
    /// How the value is shown.
    pub unit: Unit,
    /// What the value is held to.
    pub target: Target,
}

impl Row {
    /// A row for `value` measured in `scenario`.
    pub fn new(
        scenario: impl Into<String>,
        metric: impl Into<String>,
        value: f64,
        unit: Unit,
        target: Target,
    ) -> Self {
        Self {
            scenario: scenario.into(),
            store: String::new(),
            metric: metric.into(),
            value,
            unit,
            target,
        }
    }

    /// The same row, measured on `backend`.
    pub fn on(mut self, backend: Backend) -> Self {
        self.store = backend.label().to_owned();
        self
    }

    /// The same row, naming its store(s) as `store`.
    pub fn stores(mut self, store: impl Into<String>) -> Self {
        self.store = store.into();
        self
    }

    /// `PASS`, `MISS`, or `—` when there is no target.
    pub fn verdict(&self) -> &'static str {
        let pass = match self.target {
            Target::None => return "—",
            Target::AtLeast(bound) => self.value >= bound,
            Target::Below(bound) => self.value < bound,
        };
        if pass {
            "PASS"
        } else {
            "MISS"
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::None => "—".into(),
            Target::AtLeast(bound) => format!("≥ {}", self.unit.bound(bound)),
            Target::Below(bound) => format!("< {}", self.unit.bound(bound)),
        }
    }
}

/// Every row and note of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// Adds a figure, and echoes it to stderr so a long run shows progress.
    pub fn push(&mut self, row: Row) {
        eprintln!(
            "  {} [{}] / {}: {} ({} {})",
            row.scenario,
            row.store,
            row.metric,
            row.unit.format(row.value),
            row.target_text(),
            row.verdict()
        );
        self.rows.push(row);
    }

    /// Adds a note shown under the table (CPU use, checks, anything odd), and echoes it.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    /// Adds the PostgreSQL figure of `scenario` as a share of the SQLite one, when `figures`
    /// (by store) holds both.
    pub fn versus_sqlite(
        &mut self,
        scenario: impl Into<String>,
        metric: &str,
        figures: &BTreeMap<Backend, f64>,
    ) {
        if let (Some(pg), Some(sqlite)) = (
            figures.get(&Backend::Postgres),
            figures.get(&Backend::Sqlite),
        ) {
            self.push(
                Row::new(
                    scenario,
                    format!("{metric}, PostgreSQL / SQLite"),
                    pg / sqlite,
                    Unit::Ratio,
                    Target::None,
                )
                .stores("both"),
            );
        }
    }

    /// How many figures missed their target.
    pub fn misses(&self) -> usize {
        self.rows.iter().filter(|r| r.verdict() == "MISS").count()
    }

    /// The table and the notes, as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | store | figure | result | target | verdict |\n");
        out.push_str("| --- | --- | --- | ---: | --- | --- |\n");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.store,
                row.metric,
                row.unit.format(row.value),
                row.target_text(),
                row.verdict()
            );
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes:\n\n");
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// `n` with a comma between each group of three digits.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = digits.len() % 3;
    let mut groups: Vec<&str> = Vec::new();
    if head > 0 {
        groups.push(&digits[..head]);
    }
    let mut rest = &digits[head..];
    while !rest.is_empty() {
        groups.push(&rest[..3]);
        rest = &rest[3..];
    }
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn verdicts_follow_targets() {
        let row = |value, target| Row::new("s", "m", value, Unit::Millis, target);
        assert_eq!(row(0.5, Target::Below(1.0)).verdict(), "PASS");
        assert_eq!(row(1.0, Target::Below(1.0)).verdict(), "MISS");
        assert_eq!(row(2.0, Target::AtLeast(2.0)).verdict(), "PASS");
        assert_eq!(row(1.9, Target::AtLeast(2.0)).verdict(), "MISS");
        assert_eq!(row(1.9, Target::None).verdict(), "—");
    }
}
