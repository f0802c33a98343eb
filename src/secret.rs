//! Which environment values are secrets, and what shows in their place.
//!
//! A secret is never written to the state dir, printed, shown in the TUI, sent
//! to a client or put in a report. dbt's own convention is `DBT_ENV_SECRET_*`
//! (dbt scrubs those from its logs); beyond it, a key that names a password,
//! token or key is treated as one.

/// What a secret's value shows as.
pub(crate) const MASK: &str = "***";

const WORDS: [&str; 5] = ["PASSWORD", "SECRET", "TOKEN", "PRIVATE_KEY", "CREDENTIAL"];

/// Whether the value of the environment variable `key` must not be shown or stored.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    upper.starts_with("DBT_ENV_SECRET_") || WORDS.iter().any(|w| upper.contains(w))
}

/// `value`, or the mask when `key` names a secret.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) { MASK } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_dbts_own_and_any_that_name_a_credential() {
        for key in [
            "DBT_ENV_SECRET_PG",
            "SNOWFLAKE_PASSWORD",
            "snowflake_password",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "SF_PRIVATE_KEY_PATH",
            "GCP_Credentials",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "DUCKDB_PATH",
            "DBT_ENV_CUSTOM_ENV_HERD_BATCH",
            "PRIVATE",
            "KEY",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
        assert_eq!(shown("PG_PASSWORD", "hunter2"), "***");
        assert_eq!(shown("DUCKDB_PATH", "/w/a.db"), "/w/a.db");
    }
}
