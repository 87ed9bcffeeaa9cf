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

#[test]
fn a_top_delegates_a_prefix_and_refers_derived_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(&suyuan(&[
        "init",
        "--role",
        "top",
        "--data-dir",
        &p("top"),
        "--admin-secret",
        "topsecret",
    ]));
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
    std::fs::write(dir.path().join("top-secret"), "topsecret\n").unwrap();
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
    stop(top.child);
    stop(sec.child);
}
