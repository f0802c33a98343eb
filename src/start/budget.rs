//! `--budget auto`: the connection budget a PostgreSQL server has room for
//! now, asked of the server itself before the run starts (dbt-herd cannot see
//! a server's limit otherwise, and a budget above it turns into refusals).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::RunSettings;
use crate::graph::warehouse::{load_profile, render};
use crate::usage;

/// What the server said, and the budget that leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Room {
    pub max_connections: u32,
    pub reserved: u32,
    pub in_use: u32,
    /// The role's own `connection limit`, and its connections in use, when it has one.
    pub role: Option<(u32, u32)>,
}

impl Room {
    /// Connections a run may take: what the server has free for non-superusers,
    /// and what the role may still open, whichever is less; at least one.
    pub fn budget(&self) -> u32 {
        let server = self
            .max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use);
        let role = self
            .role
            .map_or(u32::MAX, |(limit, used)| limit.saturating_sub(used));
        server.min(role).max(1)
    }

    /// The line that says where the budget came from.
    pub fn line(&self) -> String {
        let role = self.role.map_or_else(String::new, |(limit, used)| {
            format!(", the role's connection limit {limit} with {used} in use")
        });
        format!(
            "--budget auto: {} connections (max_connections {}, {} reserved for superusers, {} in use{role})",
            self.budget(),
            self.max_connections,
            self.reserved,
            self.in_use
        )
    }
}

/// Asks the server (as the profile connects, with psycopg2 from dbt's own
/// Python) how many connections it has room for. A fault is a usage error
/// naming what went wrong: the run cannot know its budget.
pub(crate) fn ask(settings: &RunSettings) -> Result<Room, crate::error::UsageError> {
    let profile = load_profile(settings)
        .ok_or_else(|| usage!("--budget auto: cannot read the profile's target"))?;
    if profile.adapter != "postgres" {
        return Err(usage!(
            "--budget auto asks a PostgreSQL server for its limit; this profile's warehouse is {} (give --budget N)",
            profile.adapter
        ));
    }
    let env: BTreeMap<String, String> = settings
        .env
        .iter()
        .filter(|e| !e.value.contains('{'))
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| profile.fields.get(*n))
            .map(|v| render(v, &env))
    };
    let request = serde_json::json!({
        "host": field(&["host"]).unwrap_or_else(|| "localhost".into()),
        "port": field(&["port"]).unwrap_or_else(|| "5432".into()),
        "user": field(&["user", "username"]).unwrap_or_default(),
        "password": field(&["password", "pass"]).unwrap_or_default(),
        "dbname": field(&["dbname", "database"]).unwrap_or_default(),
    });
    let python = crate::engine::warm::process::interpreter(&settings.dbt)
        .map_err(|e| usage!("--budget auto needs dbt's Python: {e}"))?;
    let mut child = Command::new(&python[0])
        .args(&python[1..])
        .args(["-c", PROBE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| usage!("--budget auto: cannot run {}: {e}", python[0]))?;
    // The password goes on stdin, never in an argument others can read.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(request.to_string().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| usage!("--budget auto: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = err
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no answer");
        return Err(usage!("--budget auto: cannot ask the server: {why}"));
    }
    parse(&text).ok_or_else(|| usage!("--budget auto: the server's answer is unreadable: {text}"))
}

/// The probe's one line: `max reserved in_use role_limit role_used` (a role
/// without a limit says -1).
fn parse(text: &str) -> Option<Room> {
    let n: Vec<i64> = text
        .split_whitespace()
        .map(|w| w.parse().ok())
        .collect::<Option<_>>()?;
    let u = |i: usize| n.get(i).and_then(|&v| u32::try_from(v).ok());
    Some(Room {
        max_connections: u(0)?,
        reserved: u(1)?,
        in_use: u(2)?,
        role: u(3).zip(u(4)),
    })
}

/// Connects as the profile does and counts; its own connection is not counted.
const PROBE: &str = r#"
import json, sys
import psycopg2
a = json.load(sys.stdin)
c = psycopg2.connect(host=a["host"], port=int(a["port"]), user=a["user"],
                     password=a["password"], dbname=a["dbname"], connect_timeout=10)
cur = c.cursor()
cur.execute("""select current_setting('max_connections')::int,
  current_setting('superuser_reserved_connections')::int,
  (select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()),
  (select rolconnlimit from pg_roles where rolname = current_user),
  (select count(*) from pg_stat_activity where usename = current_user and pid <> pg_backend_pid())""")
print(*cur.fetchone())
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_what_the_server_and_the_role_leave() {
        let room = parse("50 3 7 -1 2\n").unwrap();
        assert_eq!(room.role, None, "no role limit");
        assert_eq!(room.budget(), 40);
        assert!(
            room.line()
                .contains("40 connections (max_connections 50, 3 reserved")
        );
        let room = parse("50 3 7 6 2").unwrap();
        assert_eq!(room.budget(), 4, "the role's limit is the tighter one");
        assert!(room.line().contains("connection limit 6 with 2 in use"));
        assert_eq!(parse("10 3 20 -1 0").unwrap().budget(), 1, "never zero");
        assert_eq!(parse("garbage"), None);
    }
}
