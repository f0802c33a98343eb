//! What kind of failure an attempt's error is, from dbt's words: the classes
//! decide what a failure means for the rest of the run (a warehouse that is
//! down fails every batch alike; a bad row fails one), and the shape of a
//! message says whether two failures are the same one.

use serde::{Deserialize, Serialize};

/// The kind of a failed attempt's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The warehouse is not there (refused, unknown host, no such file or directory).
    Connection,
    /// The warehouse refused a connection for want of room (`too many clients`).
    ConnectionLimit,
    Authentication,
    Permission,
    /// Another process holds what it needs (a DuckDB file lock, a deadlock).
    Lock,
    /// Gone on a second try: the connection broke mid-way (reset, server
    /// closed it, timeout), or two sessions raced on the catalog.
    Transient,
    /// A query failed on the data or its SQL.
    Query,
    /// Tests failed: the data, not the run, is the problem.
    TestFailure,
    /// dbt could not start the work: its project, profile or options.
    Project,
    /// None of the above.
    Other,
}

impl FailureClass {
    /// A failure of the run's surroundings, not of a batch's own data or SQL:
    /// the same one on every batch means no batch can succeed now.
    pub fn systemic(self) -> bool {
        !matches!(self, Self::Query | Self::TestFailure | Self::Other)
    }

    /// A fault that may be gone in a few seconds (a restart, a network blip):
    /// worth a retry after a wait.
    pub fn retries_itself(self) -> bool {
        matches!(self, Self::Transient | Self::Connection)
    }

    /// The word a person reads.
    pub fn word(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::ConnectionLimit => "connection limit",
            Self::Authentication => "authentication",
            Self::Permission => "permission",
            Self::Lock => "lock",
            Self::Transient => "transient",
            Self::Query => "query",
            Self::TestFailure => "test failure",
            Self::Project => "project",
            Self::Other => "other",
        }
    }
}

/// Words that give each class away, lowercased; the first class that matches wins
/// (a limit is also a refused connection; a lock error may name a path).
const SIGNS: &[(FailureClass, &[&str])] = &[
    (
        FailureClass::ConnectionLimit,
        &[
            "too many clients",
            "too many connections",
            "remaining connection slots are reserved",
            "connection limit exceeded",
        ],
    ),
    (
        FailureClass::Authentication,
        &[
            "password authentication failed",
            "authentication failed",
            "no password supplied",
            "invalid password",
            "role \"",
        ],
    ),
    (
        FailureClass::Lock,
        &[
            "could not set lock on file",
            "conflicting lock",
            "deadlock detected",
            "could not obtain lock",
            "lock timeout",
        ],
    ),
    (
        FailureClass::Permission,
        &[
            "permission denied",
            "must be owner of",
            "insufficient privilege",
        ],
    ),
    (
        FailureClass::Transient,
        &[
            "server closed the connection unexpectedly",
            "connection reset",
            "terminating connection due to administrator command",
            "ssl syscall error",
            "broken pipe",
            "connection timed out",
            "the database system is shutting down",
            "the database system is starting up",
            // Two sessions creating one schema or type at once: the loser's
            // statement fails, and succeeds once the winner has committed.
            "pg_namespace_nspname_index",
            "pg_type_typname_nsp_index",
            "tuple concurrently updated",
            "could not serialize access",
        ],
    ),
    (
        FailureClass::Connection,
        &[
            "connection refused",
            "could not connect to server",
            "could not translate host name",
            "is the server running",
            "no such file or directory",
            "cannot open file",
            "could not open database",
        ],
    ),
    (
        FailureClass::Project,
        &[
            "env var required but not provided",
            "could not find profile",
            "does not have a target named",
            "compilation error",
            "parsing error",
            "dbt found",
            "runtime error",
        ],
    ),
];

/// The class of a failed attempt's error text (`fails`: tests failed and
/// nothing else did).
pub fn classify(error: &str, tests_only: bool) -> FailureClass {
    let lower = error.to_lowercase();
    for (class, signs) in SIGNS {
        if signs.iter().any(|s| lower.contains(s)) {
            return *class;
        }
    }
    if tests_only {
        return FailureClass::TestFailure;
    }
    if lower.contains("database error") || lower.contains("error") {
        return FailureClass::Query;
    }
    FailureClass::Other
}

/// A message with what differs between batches taken out (numbers, dates,
/// quoted names, paths, node ids): two failures of one cause have one shape.
pub fn shape(error: &str) -> String {
    let mut out = String::with_capacity(error.len());
    let mut quoted: Option<char> = None;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        let w = std::mem::take(word);
        if w.contains('/') || w.contains('.') && w.chars().any(|c| c.is_ascii_alphabetic()) {
            out.push('~');
        } else if w.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(&w);
        }
    };
    for c in error.chars().take(400) {
        if let Some(q) = quoted {
            if c == q {
                quoted = None;
                out.push(q);
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                flush(&mut word, &mut out);
                quoted = Some(c);
                out.push(c);
            }
            c if c.is_whitespace() => {
                flush(&mut word, &mut out);
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warehouses_words_give_the_class_away() {
        let cases = [
            (
                "Database Error\n  connection to server at \"localhost\" (127.0.0.1), port 5433 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
                FailureClass::Connection,
            ),
            (
                "Database Error\n  connection to server on socket \"/tmp/.s.PGSQL.5433\" failed: FATAL:  sorry, too many clients already",
                FailureClass::ConnectionLimit,
            ),
            (
                "Database Error in model a (models/a.sql)\n  server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
                FailureClass::Transient,
            ),
            (
                "_duckdb.IOException: IO Error: Could not set lock on file \"/wh/one.duckdb\": Conflicting lock is held",
                FailureClass::Lock,
            ),
            (
                "IO Error: Cannot open file \"/no/such/dir/wh.duckdb\": No such file or directory",
                FailureClass::Connection,
            ),
            (
                "FATAL:  password authentication failed for user \"herd\"",
                FailureClass::Authentication,
            ),
            (
                "permission denied for schema marts",
                FailureClass::Permission,
            ),
            (
                "duplicate key value violates unique constraint \"pg_namespace_nspname_index\" DETAIL: Key (nspname)=(herd) already exists.",
                FailureClass::Transient,
            ),
            (
                "Env var required but not provided: 'DUCKDB_PATH'",
                FailureClass::Project,
            ),
            (
                "model.shop.orders: Database Error in model orders (models/orders.sql)\n  division by zero",
                FailureClass::Query,
            ),
        ];
        for (text, class) in cases {
            assert_eq!(classify(text, false), class, "{text}");
        }
        assert_eq!(
            classify("Got 3 results, configured to fail if != 0", true),
            FailureClass::TestFailure
        );
        assert!(FailureClass::Connection.systemic());
        assert!(!FailureClass::Query.systemic());
        assert!(!FailureClass::TestFailure.systemic());
    }

    #[test]
    fn one_cause_on_different_batches_has_one_shape() {
        let a = shape(
            "model.shop.stg_2024_01_01: IO Error: Cannot open file \"/wh/2024-01-01/x.duckdb\": No such file or directory",
        );
        let b = shape(
            "model.shop.stg_2024_01_02: IO Error: Cannot open file \"/wh/2024-01-02/x.duckdb\": No such file or directory",
        );
        assert_eq!(a, b);
        let c = shape("model.shop.orders: division by zero");
        assert_ne!(a, c);
        assert_eq!(
            shape("connection to server at \"h\", port 5433 failed"),
            shape("connection to server at \"h\", port 5434 failed")
        );
    }
}
