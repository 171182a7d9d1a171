//! Which store the servers of a run keep their jobs in: a SQLite file of their own, or a
//! fresh PostgreSQL database that any number of nodes share.

use std::fmt;

use clap::ValueEnum;

/// The store one scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backend {
    /// `errands serve --db FILE --sync full`, a fresh file in a new temporary directory.
    Sqlite,
    /// `errands serve --db postgres://…/errands_bench_<random>`, a fresh database.
    Postgres,
}

impl Backend {
    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// `--backend`: one store, or both side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// SQLite only.
    Sqlite,
    /// PostgreSQL only.
    Postgres,
    /// SQLite, then PostgreSQL, for each scenario.
    Both,
}

impl BackendChoice {
    /// The backends chosen, SQLite first.
    pub fn backends(self) -> &'static [Backend] {
        match self {
            BackendChoice::Sqlite => &[Backend::Sqlite],
            BackendChoice::Postgres => &[Backend::Postgres],
            BackendChoice::Both => &[Backend::Sqlite, Backend::Postgres],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_puts_sqlite_first() {
        assert_eq!(
            BackendChoice::Both.backends(),
            [Backend::Sqlite, Backend::Postgres]
        );
        assert_eq!(BackendChoice::Postgres.backends(), [Backend::Postgres]);
    }
}
