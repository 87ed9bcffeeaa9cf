//! The PostgreSQL test server: `SUYUAN_TEST_STORE` names it (`postgres://USER@HOST:PORT/DB`).
//! Without it a test that needs it is skipped, saying so on stderr, except under CI (`CI` set),
//! where its absence is a failure: CI runs these tests on a server of its own.

use std::process::Command;

/// A URL for a schema of the test's own on the test server (first on the search path), or
/// `None` when there is no server and this is not CI.
pub fn database(test: &str) -> Option<String> {
    Some(schema_on(&server(test)?, test))
}

/// The test server's URL itself (for a tool that makes its own schema), or `None` when there
/// is no server and this is not CI.
pub fn server(test: &str) -> Option<String> {
    let url = match std::env::var("SUYUAN_TEST_STORE") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test} needs PostgreSQL: set SUYUAN_TEST_STORE=postgres://USER@HOST:PORT/DB"
            );
            eprintln!("{test}: skipped: set SUYUAN_TEST_STORE=postgres://… to run it");
            return None;
        }
    };
    Some(url)
}

/// A new schema on the server at `url`, as a URL whose search path starts there.
pub fn schema_on(url: &str, test: &str) -> String {
    let name = format!("{test}_{}_{}", std::process::id(), rand::random::<u32>());
    psql(url, &format!("CREATE SCHEMA {name}"));
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{name}")
}

/// The schema a URL made by [`schema_on`] points at.
pub fn schema_of(url: &str) -> &str {
    url.rsplit("%3D").next().unwrap_or_default()
}

/// Runs SQL (`-c`, or a file with `-f` given in `args`) on `url`; panics with psql's words on
/// failure. Returns what it printed, unaligned and without headers.
pub fn psql_args(url: &str, args: &[&str]) -> String {
    let out = Command::new("psql")
        .args([url, "-qXtA", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn psql(url: &str, sql: &str) -> String {
    psql_args(url, &["-c", sql])
}
