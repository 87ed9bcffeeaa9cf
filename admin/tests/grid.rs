//! The two-node demo of README.md ("Two nodes that work together"): a top, the plant and the
//! grid company's node on loopback, federated over QUIC with mutual TLS, started by
//! `deploy/grid/federation.sh` as a new user would; then the README's commands, and a node
//! whose certificate another CA issued, refused in the handshake with the reason in the log.

mod common;
use common::*;

/// Stops the script's nodes however the test ends.
struct Federation(std::path::PathBuf);

impl Drop for Federation {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .args(["stop", "grid-fed"])
            .current_dir(&self.0)
            .status();
    }
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grid/federation.sh")
}

#[test]
fn the_readme_federation_of_a_plant_and_its_grid() {
    let dir = tempfile::tempdir().unwrap();
    let fed = Federation(dir.path().to_path_buf());
    let up = sh(
        &format!("bash {} start grid-fed", script().display()),
        dir.path(),
    );
    assert!(up.contains("federation up"), "{up}");
    for (cmd, shown) in readme_block("grid-session") {
        assert_eq!(sh(&cmd, dir.path()), shown.join("\n"), "{cmd}");
    }
    // A node of another federation that trusts ours (so the refusal is the top's): its walk
    // to the top fails, and is not sent in clear instead; the top's log says why.
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    sh("suyuan keygen --ca --out other-ca 2>/dev/null", dir.path());
    sh(
        "suyuan keygen --node-cert 0.NA/99.9 --ca-dir other-ca --out stranger-cert 2>/dev/null",
        dir.path(),
    );
    std::fs::write(
        p("both-ca.pem"),
        std::fs::read_to_string(p("grid-fed/ca/ca-cert.pem")).unwrap()
            + &std::fs::read_to_string(p("other-ca/ca-cert.pem")).unwrap(),
    )
    .unwrap();
    sh(
        "suyuan init --prefix 99.9 --data-dir stranger --admin-secret s 2>/dev/null",
        dir.path(),
    );
    let stranger = serve_with(
        &dir.path().join("stranger"),
        &[
            "--federation-ca",
            &p("both-ca.pem"),
            "--node-cert",
            &p("stranger-cert/federation-cert.pem"),
            "--node-key",
            &p("stranger-cert/federation-key.pem"),
            "--upstream",
            &p("grid-fed/top/siteinfo.json"),
            "--recursion",
        ],
    );
    let out = suyuan(&[
        "resolve",
        "88.888.1/report-2025",
        "--server",
        &stranger.handle.to_string(),
        "--recursive",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("federation channel to 127.0.0.1:2730"),
        "{err}"
    );
    let log = std::fs::read_to_string(p("grid-fed/top.log")).unwrap();
    let refused = log
        .lines()
        .find(|l| l.contains("federation peer refused in the handshake"))
        .unwrap_or_else(|| panic!("no refusal in the top's log:\n{log}"));
    assert!(
        refused.contains("UnknownIssuer") && refused.contains("not issued by this federation's CA"),
        "{refused}"
    );
    stop(stranger.child);
    drop(fed);
}
