//! A short run of `suyuan bench store` (PostgreSQL against redb, two servers on one database
//! against one; the figures themselves are in BENCHMARKS.md). It needs a PostgreSQL server:
//! `SUYUAN_TEST_STORE=postgres://USER@HOST:PORT/DB`. Without one the test is skipped, except
//! under CI, where it must run.

use std::process::Command;

mod common;
use common::*;

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_end_matches("/s").parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}")) as u64
}

#[test]
fn the_store_bench_measures_every_configuration_against_its_baseline() {
    let Some(url) = pg::server("bench_store") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = suyuan(&[
        "bench",
        "store",
        "--postgres",
        &url,
        "--dir",
        dir.path().to_str().unwrap(),
        "--records",
        "300",
        "--max-steps",
        "1",
        "--seconds",
        "1",
        "--from",
        "200",
        "--rate",
        "200",
        "--create-from",
        "50",
        "--create-rate",
        "50",
        "--fixed-seconds",
        "1",
        "--sessions",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every run's line: every request answered, none with an error.
    let runs: Vec<&str> = text.lines().filter(|l| l.contains(" mode=")).collect();
    for l in &runs {
        assert_eq!(field(l, "errors"), 0, "{l}");
        assert_eq!(field(l, "lost"), 0, "{l}");
        assert_eq!(field(l, "answered"), field(l, "sent"), "{l}");
        assert!(field(l, "sent") > 0, "{l}");
    }
    // A fixed-rate run for each of the nine configurations, each at its rate.
    let fixed: Vec<&&str> = runs.iter().filter(|l| l.starts_with("fixed ")).collect();
    assert_eq!(fixed.len(), 9, "{text}");
    for l in &fixed {
        let rate = if l.contains("mode=Create") { 50 } else { 200 };
        assert_eq!(field(l, "sent"), rate, "{l}");
    }
    for label in [
        "fixed udp redb:",
        "fixed udp postgres:",
        "fixed create redb:",
        "fixed create postgres:",
        "fixed udp redb cache-off:",
        "fixed udp postgres cache-off:",
        "fixed udp postgres x2 cache-off:",
        "fixed udp postgres x2:",
        "fixed create postgres x2:",
    ] {
        assert!(
            fixed.iter().any(|l| l.starts_with(label)),
            "{label}\n{text}"
        );
    }

    // The two tables: every row has a figure in each column and a ratio.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| what"))
        .collect();
    assert_eq!(rows.len(), 13, "{text}");
    for r in &rows {
        let cells: Vec<&str> = r.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "{r}");
        for c in &cells[1..3] {
            assert!(c.chars().any(|ch| ch.is_ascii_digit()), "{r}");
            assert!(!c.contains("lost") && !c.contains("errors"), "{r}");
        }
    }
    let load = rows
        .iter()
        .find(|r| r.contains("load 300 records"))
        .unwrap();
    let ratio: f64 = load
        .trim_matches('|')
        .split(" | ")
        .nth(3)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ratio > 0.0, "{load}");

    // The schema the run made is gone again.
    let schema = text
        .lines()
        .find_map(|l| l.split_once(", schema ").map(|(_, s)| s.trim().to_string()))
        .expect("the first line names the schema");
    let left = Command::new("psql")
        .args([
            url.as_str(),
            "-tAXc",
            &format!(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{schema}'"
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "0",
        "{schema}"
    );
}
