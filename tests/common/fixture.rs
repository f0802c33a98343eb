//! The dbt projects under tests/fixtures, copied where a test may write (dbt
//! writes into its project dir), and what a DuckDB file holds once a run is over.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::text;

/// tests/fixtures/`name` copied to `dir/project`.
pub fn copy_fixture(name: &str, dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let to = dir.join("project");
    copy_dir(&from, &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The rows of `sql` on the DuckDB file `db`, each as its columns' text, read
/// with the duckdb module of the venv `dbt` is in (the file must be free).
pub fn duckdb_rows(dbt: &Path, db: &Path, sql: &str) -> Vec<Vec<String>> {
    let python = dbt.parent().unwrap().join("python");
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import duckdb,sys\n\
             c = duckdb.connect(sys.argv[1], read_only=True)\n\
             for row in c.execute(sys.argv[2]).fetchall():\n    print('\\t'.join(str(v) for v in row))\n",
        )
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}
