//! The warm worker's protocol: one JSON object per line each way, over two pipes
//! of its own (never its stdout, where dbt, adapters and user code may print
//! anything). The worker program is `assets/worker/herd_worker.py`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version both sides speak.
pub(crate) const PROTO: u32 = 1;

/// What dbt-herd asks of a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(crate) enum Request {
    /// Parse the project (argv after `dbt`, starting with `parse`) and keep the
    /// manifest; with `digest`, describe every node for a parse-invariance check.
    Parse {
        args: Vec<String>,
        env: BTreeMap<String, Option<String>>,
        digest: bool,
    },
    /// One dbt invocation on the kept manifest, the same argv a cold batch gets.
    Run {
        job: String,
        args: Vec<String>,
        env: BTreeMap<String, Option<String>>,
    },
    Exit,
}

/// What a worker says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub(crate) enum Reply {
    Hello {
        proto: u32,
        pid: u32,
        #[serde(default)]
        dbt: String,
        #[serde(default)]
        import_s: f64,
    },
    /// One of dbt's events, as `--log-format json` prints it.
    Event {
        job: Option<String>,
        line: String,
        #[serde(default)]
        cut: bool,
    },
    Parsed {
        ok: bool,
        #[serde(default)]
        elapsed_s: f64,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        digest: Option<serde_json::Map<String, serde_json::Value>>,
    },
    Done {
        job: String,
        ok: bool,
        exit_code: i32,
        #[serde(default)]
        interrupted: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        elapsed_s: f64,
    },
    Error {
        error: String,
    },
}

impl Request {
    /// The request as one protocol line.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Parses one protocol line; a line that is not a reply is a broken worker.
pub(crate) fn parse_reply(line: &[u8]) -> Result<Reply, String> {
    serde_json::from_slice(line).map_err(|e| {
        let shown = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
        format!("not a protocol message ({e}): {shown}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_match_the_worker_program() {
        let run = Request::Run {
            job: "3:1".into(),
            args: vec!["build".into()],
            env: [("A".to_string(), Some("1".to_string()))].into(),
        };
        assert_eq!(
            String::from_utf8(run.line()).unwrap(),
            "{\"t\":\"run\",\"job\":\"3:1\",\"args\":[\"build\"],\"env\":{\"A\":\"1\"}}\n"
        );
        assert_eq!(Request::Exit.line(), b"{\"t\":\"exit\"}\n");
        let done = parse_reply(
            br#"{"t":"done","job":"3:1","ok":false,"exit_code":1,"interrupted":false,"error":"1 node(s) failed","elapsed_s":0.5}"#,
        )
        .unwrap();
        assert!(matches!(done, Reply::Done { exit_code: 1, .. }));
        let hello = parse_reply(
            br#"{"t":"hello","proto":1,"pid":7,"python":"3.11.7","dbt":"1.11.16","import_s":0.8}"#,
        )
        .unwrap();
        assert!(matches!(
            hello,
            Reply::Hello {
                proto: 1,
                pid: 7,
                ..
            }
        ));
        assert!(parse_reply(b"{\"t\":\"done\"").is_err());
        assert!(parse_reply(b"hello from a macro").is_err());
    }
}
