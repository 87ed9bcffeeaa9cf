//! A top-level node and a delegate on loopback: `init --role top`, `suyuan delegate` over the
//! wire, the top's answers for the delegated prefix and the referral for a derived one.

mod common;
use common::*;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A top-level node in DIR/top whose administrator's secret is in DIR/top-secret.
fn init_top(dir: &std::path::Path) {
    let top = dir.join("top");
    ok(&suyuan(&[
        "init",
        "--role",
        "top",
        "--data-dir",
        top.to_str().unwrap(),
        "--admin-secret",
        "topsecret",
    ]));
    std::fs::write(dir.join("top-secret"), "topsecret\n").unwrap();
}

#[test]
fn a_top_delegates_a_prefix_and_refers_derived_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    init_top(dir.path());
    // The top's bootstrap file is a reference client's whole configuration.
    let boot: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("top/bootstrap_handles")).unwrap(),
    )
    .unwrap();
    for h in ["0.0/0.0", "0.NA/0.NA"] {
        assert!(
            boot["handles"][h]["values"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{h}: {boot}"
        );
    }
    ok(&suyuan(&["keygen", "--out", &p("keys")]));
    ok(&suyuan(&[
        "init",
        "--prefix",
        "88.888",
        "--data-dir",
        &p("sec"),
        "--admin-secret",
        "secsecret",
    ]));
    std::fs::write(dir.path().join("wrong"), "nottheone\n").unwrap();
    let top = serve(&dir.path().join("top"));
    let sec = serve(&dir.path().join("sec"));
    let addr = top.handle.to_string();
    let delegate = |to: &str, secret: &str| {
        suyuan(&[
            "delegate",
            "88.888",
            "--top",
            to,
            "--auth",
            "301:0.NA/0.NA",
            "--secret-file",
            &p(secret),
            "--site",
            &p("sec/siteinfo.json"),
            "--admin-pubkey",
            &p("keys/admpub.pem"),
            "--prefix-service",
        ])
    };
    let first = ok(&delegate(&addr, "top-secret"));
    assert!(first.starts_with("created 0.NA/88.888"), "{first}");
    let again = ok(&delegate(&addr, "top-secret"));
    assert!(again.contains("unchanged"), "{again}");

    let record = ok(&suyuan(&["resolve", "0.NA/88.888", "--server", &addr]));
    for want in [
        "HS_SITE ",
        "HS_SITE.PREFIX",
        "admin=300:0.NA/88.888",
        "HS_PUBKEY",
    ] {
        assert!(record.contains(want), "{want} in {record}");
    }
    // A derived prefix the top does not hold is referred to the delegate's site.
    let derived = refused(&suyuan(&["resolve", "0.NA/88.888.1", "--server", &addr]));
    assert!(derived.contains("303"), "{derived}");
    // A prefix nobody delegated is not found at the top.
    let unknown = refused(&suyuan(&["resolve", "0.NA/77.1", "--server", &addr]));
    assert!(unknown.contains("100"), "{unknown}");

    // The delegate answers its own prefix handle with its own site.
    let own = ok(&suyuan(&[
        "resolve",
        "0.NA/88.888",
        "--server",
        &sec.handle.to_string(),
    ]));
    assert!(own.contains("HS_SITE"), "{own}");
    let not_top = refused(&delegate(&sec.handle.to_string(), "top-secret"));
    assert!(not_top.contains("is not a top-level node"), "{not_top}");
    // Nothing to change needs no authentication; a change with the wrong key is refused.
    assert!(ok(&delegate(&addr, "wrong")).contains("unchanged"));
    let wrong = refused(&suyuan(&[
        "delegate",
        "88.999",
        "--top",
        &addr,
        "--auth",
        "301:0.NA/0.NA",
        "--secret-file",
        &p("wrong"),
        "--site",
        &p("sec/siteinfo.json"),
    ]));
    assert!(wrong.contains("AUTHENTICATION_FAILED"), "{wrong}");

    // The delegate moves (another port): with the key of 300:0.NA/88.888 it brings its site
    // at the top up to date, and a walk from the top reaches it where it is now.
    stop(sec.child);
    let moved = serve_with(
        &dir.path().join("sec"),
        &[
            "--upstream",
            &addr,
            "--delegation-key",
            &p("keys/admpriv.pem"),
        ],
    );
    let want = format!("served by 0.NA/88.888 at udp {}", moved.handle);
    let mut seen = String::new();
    for _ in 0..100 {
        let out = suyuan(&["resolve", "88.888/ADMIN", "--root", &addr]);
        seen = String::from_utf8_lossy(&out.stderr).into_owned();
        if seen.contains(&want) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen.contains(&want), "{want} in {seen}");
    stop(top.child);
    stop(moved.child);
}

fn metric(ops: std::net::SocketAddr, line_start: &str) -> f64 {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://{ops}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A top, a secondary serving the demo's enterprise prefix 88.888.1 under its delegated
/// 88.888 (derived prefixes referred to it), and a secondary for 99.9 that recurses for its
/// clients: every handle is reached from the top by referral, and through the recursing node.
#[test]
fn handles_are_reached_from_the_top_by_referral_and_through_a_recursing_node() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    init_top(dir.path());
    ok(&suyuan(&[
        "init",
        "--prefix",
        "99.9",
        "--data-dir",
        &p("b"),
        "--admin-secret",
        "bsecret",
    ]));
    std::fs::write(
        dir.path().join("plant.jsonl"),
        concat!(
            r#"{"handle": "99.9/plant-1", "values": [{"index": 1, "type": "URL", "data": "https://example.org/plant-1"}]}"#,
            "\n",
            r#"{"handle": "99.9/summary", "values": [{"index": 1, "type": "mrv.kind", "data": "report"}, "#,
            r#"{"index": 2, "type": "prov.wasDerivedFrom", "data": "88.888.1/report-2025"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    ok(&suyuan(&[
        "import",
        &p("plant.jsonl"),
        "--offline",
        "--data-dir",
        &p("b"),
    ]));

    let top = serve(&dir.path().join("top"));
    let topa = top.handle.to_string();
    let a = serve_with(&dir.path().join("a"), &["--demo"]);
    let b = serve_with(
        &dir.path().join("b"),
        &[
            "--upstream",
            &topa,
            "--recursion",
            "--resolver-addr",
            "127.0.0.1:0",
        ],
    );
    let delegate = |prefix: &str, site: &str, extra: &[&str]| {
        let mut args = vec![
            "delegate",
            prefix,
            "--top",
            &topa,
            "--auth",
            "301:0.NA/0.NA",
            "--secret-file",
        ];
        let (secret, site) = (p("top-secret"), p(site));
        args.extend([secret.as_str(), "--site", site.as_str()]);
        args.extend(extra);
        ok(&suyuan(&args))
    };
    delegate("88.888", "a/siteinfo.json", &["--prefix-service"]);
    delegate("99.9", "b/siteinfo.json", &[]);

    // From the top, as a reference client walks: 0.NA/88.888.1 is referred (RC 303) to the
    // secondary, which answers it with its own site, and then the handle itself.
    let report = "88.888.1/report-2025";
    let walked = suyuan(&["resolve", report, "--root", &topa]);
    let values = ok(&walked);
    assert!(values.contains("mrv."), "{values}");
    let served = String::from_utf8_lossy(&walked.stderr).into_owned();
    assert!(
        served.contains(&format!("served by 0.NA/88.888.1 at udp {}", a.handle)),
        "{served}"
    );
    assert!(
        ok(&suyuan(&["resolve", "99.9/plant-1", "--root", &topa]))
            .contains("https://example.org/plant-1")
    );
    let unknown = refused(&suyuan(&["resolve", "77.1/x", "--root", &topa]));
    assert!(unknown.contains("prefix 77.1 is unknown"), "{unknown}");

    // The recursing node answers a foreign handle when asked to recurse, and only then; its
    // resolver face recurses for every request.
    let bh = b.handle.to_string();
    assert!(
        ok(&suyuan(&[
            "resolve",
            report,
            "--server",
            &bh,
            "--recursive"
        ]))
        .contains("mrv.")
    );
    let plain = refused(&suyuan(&["resolve", report, "--server", &bh]));
    assert!(plain.contains("301"), "{plain}");
    let face = b.resolver.expect("resolver face").to_string();
    assert!(ok(&suyuan(&["resolve", report, "--server", &face])).contains("mrv."));
    // A node without recursion refuses a recursive request for what it does not serve.
    let no = refused(&suyuan(&[
        "resolve",
        "99.9/plant-1",
        "--server",
        &a.handle.to_string(),
        "--recursive",
    ]));
    assert!(no.contains("301"), "{no}");
    // Unknown prefixes come back as not found, naming the prefix.
    let missing = refused(&suyuan(&["resolve", "77.1/x", "--server", &face]));
    assert!(
        missing.contains("HANDLE_NOT_FOUND") && missing.contains("77.1"),
        "{missing}"
    );

    // A trace crosses the boundary: the remote record's public values, and who served it.
    let http = format!("http://{}", b.http);
    let json = ok(&suyuan(&[
        "trace",
        "99.9/summary",
        "--node",
        &http,
        "--json",
    ]));
    let t: serde_json::Value = serde_json::from_str(&json).unwrap();
    let by = |h: &str| {
        t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["handle"] == h)
            .unwrap_or_else(|| panic!("{h} in {t}"))
            .clone()
    };
    assert_eq!(by("99.9/summary")["servedBy"], "0.NA/99.9");
    let remote = by(report);
    assert_eq!(remote["servedBy"], "0.NA/88.888.1", "{t}");
    assert_eq!(remote["kind"], "annual-report", "{t}");
    assert_eq!(t["unreachable"], serde_json::json!([]), "{t}");
    let tree = ok(&suyuan(&["trace", "99.9/summary", "--node", &http]));
    assert!(tree.contains("[served by 0.NA/88.888.1]"), "{tree}");

    // The second resolution of the report came from the cache.
    assert!(metric(b.ops, "suyuan_upstream_cache_lookups_total{result=\"hit\"}") >= 1.0);
    assert!(metric(b.ops, "suyuan_referrals_followed_total{rc=\"303\"}") >= 1.0);
    assert!(
        metric(
            b.ops,
            "suyuan_upstream_requests_total{outcome=\"answered\"}"
        ) >= 3.0
    );
    for s in [top, a, b] {
        stop(s.child);
    }
}
