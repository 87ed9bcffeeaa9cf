//! `suyuan bench store`: the PostgreSQL store against the embedded one (redb), and two servers
//! on one database against one, measured in one sitting against real nodes on loopback.
//!
//! The command makes its own nodes: one on redb and two on a fresh schema of the database it is
//! given (the second joins the first), loads the same records into both stores through the
//! registry's group commit (timed: batched registration without the network), then runs the
//! generator's sweeps and fixed-rate runs against them, in this order so that no stopped server
//! is still counted as a live peer of a running one:
//!
//! 1. the default cache: resolution and creates, redb and one PostgreSQL server;
//! 2. the cache effectively off (one entry), so resolution reaches the store: redb and one
//!    PostgreSQL server, then both PostgreSQL servers with resolution spread over them;
//! 3. the default cache on both PostgreSQL servers: resolution spread over them and creates
//!    through both.
//!
//! Every figure is printed beside its baseline of the same run, with the ratio, as a Markdown
//! table at the end; each run's own line comes first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Mode, Report, Step, Steps, Target, load, rt, run_once, sweep_with};
use crate::datadir::DataDir;

const PREFIX: &str = "88.888.1";
const SECRET: &str = "bench-store-secret";

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// A PostgreSQL database (postgres://USER@HOST:PORT/DB) in which the bench may create a
    /// schema; it makes one for the run and drops it afterwards.
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// Where the nodes' data dirs and logs go (default: a new directory under the system's
    /// temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Records loaded into each store (the keys resolution draws from).
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Seconds per sweep step (and of each warm-up).
    #[arg(long, default_value_t = 1)]
    seconds: u64,
    /// Steps of a sweep at most.
    #[arg(long, default_value_t = 10)]
    max_steps: usize,
    /// Each sweep step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// First rate of the resolution sweeps (UDP), per second.
    #[arg(long, default_value_t = 500.0)]
    from: f64,
    /// The p99.9 bound of a passing resolution step, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    p999_ms: f64,
    /// First rate of the create sweeps, per second.
    #[arg(long, default_value_t = 100.0)]
    create_from: f64,
    /// The p99.9 bound of a passing create step (each waits for its durable commit).
    #[arg(long, default_value_t = 100.0)]
    create_p999_ms: f64,
    /// Resolutions per second of the fixed-rate runs (latency at the same load everywhere).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Creates per second of the fixed-rate runs.
    #[arg(long, default_value_t = 250.0)]
    create_rate: f64,
    /// Seconds of each fixed-rate run.
    #[arg(long, default_value_t = 2)]
    fixed_seconds: u64,
    /// Sessions (connections) per server for creates, each with up to 64 in flight.
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Run the nodes on these CPUs (`taskset -c LIST`); pin the generator yourself, e.g.
    /// `taskset -c 0 suyuan bench store --node-cpus 1 ...`.
    #[arg(long, value_name = "LIST")]
    node_cpus: Option<String>,
    /// Keep the directory and the schema afterwards.
    #[arg(long)]
    keep: bool,
}

pub fn run(a: StoreArgs) -> Result<ExitCode> {
    if !a.postgres.starts_with("postgres://") && !a.postgres.starts_with("postgresql://") {
        bail!("--postgres needs a URL postgres://USER@HOST:PORT/DB");
    }
    let tag = format!("{}_{:08x}", std::process::id(), rand::random::<u32>());
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("suyuan-bench-store-{tag}")));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        remove_dir: a.dir.is_none() && !a.keep,
        base_url: a.postgres.clone(),
        schema: None,
        keep: a.keep,
    };
    let schema = format!("suyuan_bench_{tag}");
    psql(&a.postgres, &format!("CREATE SCHEMA {schema}"))?;
    scratch.schema = Some(schema.clone());
    let sep = if a.postgres.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-csearch_path%3D{schema}", a.postgres);
    crate::outln!("bench store: work dir {}, schema {schema}", dir.display())?;
    let b = Bench {
        secret: dir.join("secret"),
        rt: rt()?,
        a: &a,
        dir,
    };
    std::fs::write(&b.secret, format!("{SECRET}\n"))?;
    let fig = b.all(&url)?;
    b.table(&fig)?;
    drop(scratch);
    Ok(ExitCode::SUCCESS)
}

/// Removes what the run made (unless kept), also when it fails half-way.
struct Scratch {
    dir: PathBuf,
    remove_dir: bool,
    base_url: String,
    schema: Option<String>,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(s) = &self.schema
            && !self.keep
            && let Err(e) = psql(&self.base_url, &format!("DROP SCHEMA {s} CASCADE"))
        {
            eprintln!("bench store: cannot drop schema {s}: {e}");
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-qXc", sql])
        .output()
        .context("cannot run psql (the PostgreSQL client)")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// What one configuration measured: the highest passing rate of its sweep (if any passed) and
/// its fixed-rate run.
struct Figure {
    best: Option<Report>,
    from: f64,
    fixed: Report,
}

/// Everything the summary shows.
struct Figures {
    load_redb: f64,
    load_pg: f64,
    res_redb: Figure,
    res_pg: Figure,
    create_redb: Figure,
    create_pg: Figure,
    nocache_redb: Figure,
    nocache_pg: Figure,
    nocache_pg2: Figure,
    res_pg2: Figure,
    create_pg2: Figure,
}

struct Bench<'a> {
    a: &'a StoreArgs,
    rt: tokio::runtime::Runtime,
    dir: PathBuf,
    secret: PathBuf,
}

impl Bench<'_> {
    fn all(&self, url: &str) -> Result<Figures> {
        let (redb, pg1, pg2) = (
            self.dir.join("redb"),
            self.dir.join("pg1"),
            self.dir.join("pg2"),
        );
        self.init(&redb, None, false)?;
        self.init(&pg1, Some(url), false)?;
        let load_redb = self.load(&redb)?;
        let load_pg = self.load(&pg1)?;
        crate::outln!(
            "load {} records: redb {load_redb:.0}/s, postgres {load_pg:.0}/s",
            self.a.records
        )?;

        // 1. The default cache, one server each.
        let (n_redb, n_pg) = (self.serve(&redb, None)?, self.serve(&pg1, None)?);
        let res_redb = self.resolution("udp redb", &[n_redb.handle])?;
        let res_pg = self.resolution("udp postgres", &[n_pg.handle])?;
        let create_redb = self.creates("create redb", &[n_redb.handle])?;
        let create_pg = self.creates("create postgres", &[n_pg.handle])?;
        drop((n_redb, n_pg));

        // 2. The cache off: the store answers every resolution.
        let (n_redb, n_pg) = (self.serve(&redb, Some(1))?, self.serve(&pg1, Some(1))?);
        let nocache_redb = self.resolution("udp redb cache-off", &[n_redb.handle])?;
        let nocache_pg = self.resolution("udp postgres cache-off", &[n_pg.handle])?;
        drop(n_redb);
        // Joined only now: a server that opened the database counts as a live peer for a few
        // seconds, and writers wait for live peers to see their commits.
        self.init(&pg2, Some(url), true)?;
        let n_pg2 = self.serve(&pg2, Some(1))?;
        let nocache_pg2 =
            self.resolution("udp postgres x2 cache-off", &[n_pg.handle, n_pg2.handle])?;
        drop((n_pg, n_pg2));

        // 3. The default cache on both servers.
        let (n1, n2) = (self.serve(&pg1, None)?, self.serve(&pg2, None)?);
        let res_pg2 = self.resolution("udp postgres x2", &[n1.handle, n2.handle])?;
        let create_pg2 = self.creates("create postgres x2", &[n1.handle, n2.handle])?;
        drop((n1, n2));
        Ok(Figures {
            load_redb,
            load_pg,
            res_redb,
            res_pg,
            create_redb,
            create_pg,
            nocache_redb,
            nocache_pg,
            nocache_pg2,
            res_pg2,
            create_pg2,
        })
    }

    fn init(&self, dir: &Path, store: Option<&str>, join: bool) -> Result<()> {
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["init", "--prefix", PREFIX, "--data-dir"])
            .arg(dir)
            .env("SUYUAN_ADMIN_SECRET", SECRET);
        if let Some(url) = store {
            c.args(["--store", url]);
        }
        if join {
            c.arg("--join");
        }
        let out = c.output()?;
        if !out.status.success() {
            bail!(
                "init {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Loads the benchmark records into a stopped node's store; returns records per second.
    fn load(&self, dir: &Path) -> Result<f64> {
        let reg = DataDir::new(dir).open_registry(None)?;
        let started = Instant::now();
        load(&reg, PREFIX, self.a.records, &|_| true)?;
        let secs = started.elapsed().as_secs_f64();
        reg.close();
        Ok(self.a.records as f64 / secs.max(1e-9))
    }

    /// Starts `suyuan serve` on free loopback ports; `cache` overrides the cache's entries.
    fn serve(&self, dir: &Path, cache: Option<u64>) -> Result<Node> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("node");
        let config = self.dir.join(format!("{name}.toml"));
        let mut text = format!(
            "data_dir = {:?}\nhandle_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n\
             ops_addr = \"127.0.0.1:0\"\n",
            dir.display().to_string()
        );
        if let Some(n) = cache {
            text.push_str(&format!("cache_entries = {n}\n"));
        }
        std::fs::write(&config, text)?;
        let exe = std::env::current_exe()?;
        let mut c = match &self.a.node_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let log_path = self.dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut child = c
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("SUYUAN_ADMIN_SECRET")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start suyuan serve")?;
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().context("stdout piped")?);
        out.read_line(&mut line)?;
        let mut node = Node {
            child,
            _stdout: out,
            handle: "127.0.0.1:0".parse()?,
        };
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("handle="))
            .and_then(|a| a.parse::<SocketAddr>().ok());
        match addr {
            Some(a) => node.handle = a,
            None => bail!(
                "{name} did not start (ready line {line:?}; log {})",
                log_path.display()
            ),
        }
        Ok(node)
    }

    fn target(&self, mode: Mode, server: SocketAddr) -> Target {
        Target {
            mode,
            server: Some(server),
            site: None,
            prefix: PREFIX.into(),
            keys: self.a.records,
            zipf: 1.0,
            miss: 0.05,
            connections: if mode == Mode::Create {
                self.a.sessions
            } else {
                16
            },
            depth: 64,
            timeout_ms: 1000,
            secret_file: Some(self.secret.clone()),
        }
    }

    /// One run at `rate` in all, spread evenly over the servers (one generator task each, on
    /// the same thread), merged into one report.
    fn spread(&self, targets: &[Target], rate: f64, seconds: u64) -> Result<Report> {
        self.rt.block_on(async {
            let share = rate / targets.len() as f64;
            let mut set = tokio::task::JoinSet::new();
            for t in targets {
                let t = t.clone();
                set.spawn(async move { run_once(&t, share, seconds).await });
            }
            let mut all = Report::new(rate);
            while let Some(r) = set.join_next().await {
                all.merge(r??);
            }
            all.seconds = seconds as f64;
            Ok(all)
        })
    }

    fn resolution(&self, label: &str, servers: &[SocketAddr]) -> Result<Figure> {
        let steps = Steps {
            from: self.a.from,
            factor: self.a.factor,
            seconds: self.a.seconds,
            p999_ms: self.a.p999_ms,
            warmup_seconds: self.a.seconds,
            max_steps: self.a.max_steps,
        };
        self.figure(label, Mode::Udp, servers, &steps, self.a.rate)
    }

    fn creates(&self, label: &str, servers: &[SocketAddr]) -> Result<Figure> {
        let steps = Steps {
            from: self.a.create_from,
            factor: self.a.factor,
            seconds: self.a.seconds,
            p999_ms: self.a.create_p999_ms,
            warmup_seconds: 0,
            max_steps: self.a.max_steps,
        };
        self.figure(label, Mode::Create, servers, &steps, self.a.create_rate)
    }

    /// A sweep, then a run at the fixed rate.
    fn figure(
        &self,
        label: &str,
        mode: Mode,
        servers: &[SocketAddr],
        steps: &Steps,
        fixed_rate: f64,
    ) -> Result<Figure> {
        let targets: Vec<Target> = servers.iter().map(|s| self.target(mode, *s)).collect();
        let best = sweep_with(
            steps,
            |rate, seconds| self.spread(&targets, rate, seconds),
            |step, r| {
                let word = match step {
                    Step::WarmUp => "warm-up",
                    Step::Pass => "PASS",
                    Step::Fail => "FAIL",
                };
                crate::outln!("{label}: {} {word}", r.line(&targets[0]))
            },
        )?;
        std::thread::sleep(Duration::from_millis(500));
        let fixed = self.spread(&targets, fixed_rate, self.a.fixed_seconds)?;
        crate::outln!("fixed {label}: {}", fixed.line(&targets[0]))?;
        Ok(Figure {
            best,
            from: steps.from,
            fixed,
        })
    }

    fn table(&self, f: &Figures) -> Result<()> {
        let a = self.a;
        let mut t = String::from(
            "\n| what | redb (baseline) | PostgreSQL | PostgreSQL / redb |\n|---|---|---|---|\n",
        );
        t.push_str(&format!(
            "| load {} records in process (group commits, batches of 5,000) | {:.0}/s | {:.0}/s | {:.2} |\n",
            a.records,
            f.load_redb,
            f.load_pg,
            f.load_pg / f.load_redb.max(1e-9)
        ));
        let res = format!("highest rate with p99.9 ≤ {} ms", a.p999_ms);
        let cre = format!("highest rate with p99.9 ≤ {} ms", a.create_p999_ms);
        for (what, x, y) in [
            (
                format!("UDP resolution, cache on: {res}"),
                &f.res_redb,
                &f.res_pg,
            ),
            (
                format!("UDP resolution, cache off: {res}"),
                &f.nocache_redb,
                &f.nocache_pg,
            ),
            (
                format!("create, {} sessions × 64 in flight: {cre}", a.sessions),
                &f.create_redb,
                &f.create_pg,
            ),
        ] {
            t.push_str(&rate_row(&what, x, y));
        }
        for (what, x, y) in [
            (
                format!("UDP resolution, cache on, at {:.0}/s", a.rate),
                &f.res_redb,
                &f.res_pg,
            ),
            (
                format!("UDP resolution, cache off, at {:.0}/s", a.rate),
                &f.nocache_redb,
                &f.nocache_pg,
            ),
            (
                format!("create at {:.0}/s", a.create_rate),
                &f.create_redb,
                &f.create_pg,
            ),
        ] {
            t.push_str(&fixed_row(&what, x, y));
        }
        t.push_str(
            "\n| what (PostgreSQL) | one server (baseline) | two servers, one database | two / one |\n|---|---|---|---|\n",
        );
        for (what, x, y) in [
            (
                format!("UDP resolution spread over both, cache on: {res}"),
                &f.res_pg,
                &f.res_pg2,
            ),
            (
                format!("UDP resolution spread over both, cache off: {res}"),
                &f.nocache_pg,
                &f.nocache_pg2,
            ),
            (
                format!("create through both: {cre}"),
                &f.create_pg,
                &f.create_pg2,
            ),
        ] {
            t.push_str(&rate_row(&what, x, y));
        }
        for (what, x, y) in [
            (
                format!("UDP resolution, cache on, at {:.0}/s", a.rate),
                &f.res_pg,
                &f.res_pg2,
            ),
            (
                format!("UDP resolution, cache off, at {:.0}/s", a.rate),
                &f.nocache_pg,
                &f.nocache_pg2,
            ),
            (
                format!("create at {:.0}/s", a.create_rate),
                &f.create_pg,
                &f.create_pg2,
            ),
        ] {
            t.push_str(&fixed_row(&what, x, y));
        }
        crate::outln!("{t}")
    }
}

/// A sweep's result: the rate, with its p50 and p99, or the rate no step reached.
fn rate_cell(f: &Figure) -> String {
    match &f.best {
        Some(b) => format!(
            "{:.0}/s (p50 {:.3}, p99 {:.3} ms)",
            b.rate,
            b.ms(0.5),
            b.ms(0.99)
        ),
        None => format!("none passed from {:.0}/s", f.from),
    }
}

fn rate_row(what: &str, base: &Figure, other: &Figure) -> String {
    let ratio = match (&base.best, &other.best) {
        (Some(x), Some(y)) => format!("{:.2}", y.rate / x.rate),
        _ => "–".into(),
    };
    format!(
        "| {what} | {} | {} | {ratio} |\n",
        rate_cell(base),
        rate_cell(other)
    )
}

/// A fixed-rate run: p50 / p99 / p99.9, and any request not answered well.
fn fixed_cell(r: &Report) -> String {
    let mut s = format!(
        "p50 {:.3} / p99 {:.3} / p99.9 {:.3} ms",
        r.ms(0.5),
        r.ms(0.99),
        r.ms(0.999)
    );
    let bad = r.lost() + r.timeouts + r.errors;
    if bad > 0 {
        s.push_str(&format!(
            " ({} lost, {} late, {} errors of {})",
            r.lost(),
            r.timeouts,
            r.errors,
            r.sent
        ));
    }
    s
}

/// The ratio of a fixed-rate run is that of p99.
fn fixed_row(what: &str, base: &Figure, other: &Figure) -> String {
    format!(
        "| {what} | {} | {} | p99 × {:.2} |\n",
        fixed_cell(&base.fixed),
        fixed_cell(&other.fixed),
        other.fixed.ms(0.99) / base.fixed.ms(0.99).max(1e-9)
    )
}

/// A node this bench started; stopped (SIGTERM, as an operator would) when dropped.
struct Node {
    child: Child,
    /// Held so the node's later writes to stdout do not fail.
    _stdout: BufReader<std::process::ChildStdout>,
    handle: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-15")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
