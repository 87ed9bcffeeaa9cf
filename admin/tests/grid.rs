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

/// Kills nodes a test started if it ends early (a normal end stops them itself first).
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            unsafe_free_kill(*pid as i32, 9);
        }
    }
}

/// A federation CA in DIR/ca and a certificate for each node `(name, identity)` in
/// DIR/<name>-cert.
fn federation_certs(dir: &std::path::Path, nodes: &[(&str, &str)]) {
    sh("suyuan keygen --ca --out ca 2>/dev/null", dir);
    for (n, id) in nodes {
        sh(
            &format!("suyuan keygen --node-cert {id} --ca-dir ca --out {n}-cert 2>/dev/null"),
            dir,
        );
    }
}

/// Serves the node in DIR/<name> with its federation certificates, QUIC on a free port, and
/// `extra`.
fn serve_federated(dir: &std::path::Path, name: &str, extra: &[&str]) -> Server {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let mut args = vec![
        "--federation-ca".to_string(),
        p("ca/ca-cert.pem"),
        "--node-cert".into(),
        p(&format!("{name}-cert/federation-cert.pem")),
        "--node-key".into(),
        p(&format!("{name}-cert/federation-key.pem")),
        "--quic-addr".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    serve_with(
        &dir.join(name),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// Delegates PREFIX at the top to the site in SITE (relative to DIR), as the top's
/// administrator (its secret in DIR/top-secret), with `extra` arguments.
fn delegate(dir: &std::path::Path, top: &Server, prefix: &str, site: &str, extra: &str) {
    sh(
        &format!(
            "suyuan delegate {prefix} --top {} --auth 301:0.NA/0.NA --secret-file top-secret --site {site}{extra}",
            top.handle
        ),
        dir,
    );
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
    let _guard = KillOnDrop(vec![stranger.child.id()]);
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

/// The grid node behind the fault-injecting proxy (its site at the top names the proxy's
/// ports), traced from a plant over QUIC and from another plant over HTTPS: a delayed or
/// lossy peer still answers; a hung one leaves its hop in `unreachable` within the trace's
/// budget, while the plant keeps answering its own prefix; a reset is named; a peer whose log
/// this node does not trust is merged but cannot make a check green.
#[test]
fn a_slow_lossy_hung_or_resetting_peer_costs_only_its_own_hops() {
    use common::faults::{Fault, Proxy};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    federation_certs(
        dir.path(),
        &[
            ("top", "0.NA/0.NA"),
            ("grid", "0.NA/88.888.2"),
            ("plant", "0.NA/88.888.1"),
        ],
    );
    sh(
        "suyuan init --role top --data-dir top --admin-secret topsecret 2>/dev/null",
        dir.path(),
    );
    let top = serve_federated(dir.path(), "top", &[]);
    let grid = serve_federated(
        dir.path(),
        "grid",
        &["--demo", "grid", "--upstream", &p("top/siteinfo.json")],
    );
    let proxy = Proxy::start(grid.quic.unwrap(), grid.http);
    // The grid's site as the top publishes it: its QUIC and HTTP ports are the proxy's.
    let mut site: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("grid/siteinfo.json")).unwrap()).unwrap();
    for a in site["attributes"].as_array_mut().unwrap() {
        if a["name"] == "suyuan.quic" {
            a["value"] = proxy.udp.port().to_string().into();
        }
    }
    for i in site["servers"][0]["interfaces"].as_array_mut().unwrap() {
        if i["protocol"] == "HTTP" {
            i["port"] = proxy.tcp.port().into();
        }
    }
    std::fs::write(p("grid-site.json"), site.to_string()).unwrap();
    std::fs::write(p("top-secret"), "topsecret\n").unwrap();
    delegate(dir.path(), &top, "88.888.2", "grid-site.json", "");
    // Plant 1: QUIC, and the grid's log trusted. Plant 2: no QUIC (HTTPS), trusting no log.
    std::fs::write(
        p("plant.toml"),
        format!(
            "trusted_logs = [{:?}]\n",
            std::fs::read_to_string(p("grid/log.vkey")).unwrap().trim()
        ),
    )
    .unwrap();
    let plant = serve_federated(
        dir.path(),
        "plant",
        &[
            "--demo",
            "plant",
            "--upstream",
            &p("top/siteinfo.json"),
            "--config",
            &p("plant.toml"),
        ],
    );
    delegate(dir.path(), &top, "88.888.1", "plant/siteinfo.json", "");
    let plant2 = serve_with(
        &dir.path().join("plant2"),
        &["--demo", "plant", "--upstream", &top.handle.to_string()],
    );
    let _guard = KillOnDrop(
        [&top, &grid, &plant, &plant2]
            .iter()
            .map(|s| s.child.id())
            .collect(),
    );
    let trace = |node: &Server, query: &str| -> serde_json::Value {
        let a = common::rest::curl(&[&format!(
            "http://{}/api/trace/88.888.1/fig-elec-2025-03?{query}",
            node.http
        )]);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.json()
    };
    let factor = |t: &serde_json::Value| {
        t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["handle"] == "88.888.2/factor-grid-2025")
            .cloned()
    };
    let unreachable = |t: &serde_json::Value| t["unreachable"].to_string();
    let check = |t: &serde_json::Value| t["nodes"][0]["check"].clone();

    // Over QUIC, nothing in the way: the factor from the grid, verified, the check green.
    let t = trace(&plant, "");
    let f = factor(&t).expect("the factor is in the trace");
    assert_eq!(f["servedBy"], "0.NA/88.888.2");
    assert!(f["proof"]["receipt"].is_string(), "{f}");
    assert_eq!(check(&t)["status"], "green", "{}", check(&t));

    // A loop across nodes: plant's X → grid's Y → plant's Z. The grid's trace from Y asks
    // the plant for Z with both nodes on the path; the plant refuses (508) and the hop is
    // marked, instead of the two asking each other forever.
    let put = |node: &Server, prefix: &str, suffix: &str, target: &str| {
        let secret = std::fs::read_to_string(p(&format!(
            "{}/admin-secret",
            if prefix == "88.888.1" {
                "plant"
            } else {
                "grid"
            }
        )))
        .unwrap();
        let a = common::rest::curl(&[
            "-u",
            &format!("301%3A{prefix}%2FADMIN:{}", secret.trim()),
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            &format!("https://{}/api/handles/{prefix}/{suffix}", node.http),
            "-d",
            &format!(r#"[{{"index": 2000, "type": "prov.wasDerivedFrom", "data": "{target}"}}]"#),
        ]);
        assert!(
            a.status == 200 || a.status == 201,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
    };
    put(&plant, "88.888.1", "loop-z", "88.888.1/plan-2025-v1");
    put(&grid, "88.888.2", "loop-y", "88.888.1/loop-z");
    put(&plant, "88.888.1", "loop-x", "88.888.2/loop-y");
    let a = common::rest::curl(&[&format!("http://{}/api/trace/88.888.1/loop-x", plant.http)]);
    assert_eq!(a.status, 200);
    let t = a.json();
    let y = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["handle"] == "88.888.2/loop-y");
    assert!(y.is_some_and(|y| y["servedBy"] == "0.NA/88.888.2"), "{t}");
    assert!(
        unreachable(&t).contains("88.888.1/loop-z")
            && unreachable(&t).contains("a loop across nodes"),
        "{}",
        unreachable(&t)
    );

    // Every datagram 30 ms late, either way: slower, the same answer.
    proxy.set(Fault::Delay(Duration::from_millis(30)));
    let t = trace(&plant, "");
    assert!(factor(&t).is_some(), "{}", unreachable(&t));
    assert_eq!(check(&t)["status"], "green");

    // A tenth of the datagrams lost: QUIC recovers within the budget.
    proxy.set(Fault::Loss(0.1));
    let t = trace(&plant, "budget_ms=20000");
    assert!(factor(&t).is_some(), "{}", unreachable(&t));
    assert_eq!(check(&t)["status"], "green");

    // The grid hangs: the hop is unreachable within the budget, the check grey, and while
    // such a trace waits the plant answers its own prefix.
    proxy.set(Fault::Hang);
    let t = trace(&plant, "budget_ms=1500");
    assert!(factor(&t).is_none());
    assert!(
        unreachable(&t).contains("88.888.2/factor-grid-2025")
            && unreachable(&t).contains("budget of 1500 ms"),
        "{}",
        unreachable(&t)
    );
    assert_eq!(check(&t)["status"], "grey");
    let plant_http = plant.http;
    let waiting = std::thread::spawn(move || {
        common::rest::curl(&[&format!(
            "http://{plant_http}/api/trace/88.888.1/fig-elec-2025-03?budget_ms=8000"
        )])
    });
    for _ in 0..10 {
        let out = suyuan(&[
            "resolve",
            "88.888.1/report-2025",
            "--server",
            &plant.handle.to_string(),
            "--type",
            "mrv.unit",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let local = common::rest::curl(&[&format!(
            "http://{}/api/trace/88.888.1/meter-elec",
            plant.http
        )]);
        assert_eq!(local.status, 200);
    }
    assert!(
        !waiting.is_finished(),
        "the plant's own answers came while the hung trace still waited"
    );
    let late = waiting.join().unwrap();
    assert!(String::from_utf8_lossy(&late.body).contains("budget of 8000 ms"));

    // Over HTTPS (plant 2 has no QUIC): the grid's records come, but this plant trusts no
    // log, so the check that needs the factor is grey and says why.
    proxy.set(Fault::Pass);
    let t = trace(&plant2, "");
    let f = factor(&t).expect("the factor over HTTPS");
    assert_eq!(f["servedBy"], "0.NA/88.888.2");
    assert_eq!(check(&t)["status"], "grey");
    assert!(
        check(&t)["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not configured to trust"),
        "{}",
        check(&t)
    );
    // Reset connections: the hop names the failure, the answer comes at once.
    proxy.set(Fault::Reset);
    let t = trace(&plant2, "budget_ms=5000");
    assert!(factor(&t).is_none());
    assert!(unreachable(&t).contains("HTTPS"), "{}", unreachable(&t));
    // A hung HTTPS peer: within the budget.
    proxy.set(Fault::Hang);
    let t = trace(&plant2, "budget_ms=1500");
    assert!(
        unreachable(&t).contains("budget of 1500 ms"),
        "{}",
        unreachable(&t)
    );
    for s in [plant, plant2, grid, top] {
        stop(s.child);
    }
}

/// A node with the federation's certificates keeps its delegation at a top that serves QUIC
/// over QUIC (the write authenticated by a challenge answered on a second stream): the top
/// counts the resolution and the modification on its QUIC transport.
#[test]
fn a_delegation_is_kept_current_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    federation_certs(dir.path(), &[("top", "0.NA/0.NA"), ("sec", "0.NA/88.777")]);
    sh("suyuan keygen --out keys 2>/dev/null", dir.path());
    sh(
        "suyuan init --role top --data-dir top --admin-secret topsecret 2>/dev/null",
        dir.path(),
    );
    sh(
        "suyuan init --prefix 88.777 --data-dir sec --admin-secret s 2>/dev/null",
        dir.path(),
    );
    std::fs::write(p("top-secret"), "topsecret\n").unwrap();
    let top = serve_federated(dir.path(), "top", &[]);
    let _guard = KillOnDrop(vec![top.child.id()]);
    let first = serve(&dir.path().join("sec"));
    delegate(
        dir.path(),
        &top,
        "88.777",
        "sec/siteinfo.json",
        " --admin-pubkey keys/admpub.pem",
    );
    stop(first.child);
    // Back on other ports: its site at the top is brought up to date over QUIC.
    let sec = serve_federated(
        dir.path(),
        "sec",
        &[
            "--upstream",
            &p("top/siteinfo.json"),
            "--delegation-key",
            &p("keys/admpriv.pem"),
        ],
    );
    let _guard2 = KillOnDrop(vec![sec.child.id()]);
    let quic_ops = |op: &str| -> f64 {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", top.ops)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.starts_with("suyuan_requests_total{")
                    && l.contains("transport=\"quic\"")
                    && l.contains(&format!("op=\"{op}\""))
                    && l.contains("rc=\"1\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut modified = 0.0;
    for _ in 0..100 {
        modified = quic_ops("MODIFY_VALUE");
        if modified > 0.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(modified, 1.0, "the site modified at the top over QUIC");
    assert!(quic_ops("RESOLUTION") >= 1.0);
    let out = suyuan(&[
        "resolve",
        "0.NA/88.777",
        "--server",
        &top.handle.to_string(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HS_SITE"), "{text}");
    // A client without the certificates walks there over UDP, to where it is now.
    let site = suyuan(&["resolve", "88.777/ADMIN", "--root", &top.handle.to_string()]);
    let seen = String::from_utf8_lossy(&site.stderr);
    assert!(
        seen.contains(&format!("served by 0.NA/88.777 at udp {}", sec.handle)),
        "{seen}"
    );
    stop(sec.child);
    stop(top.child);
}
