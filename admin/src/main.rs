//! The `suyuan` binary: the command line of the node. Commands talk to a running node over its
//! public protocols, or to a stopped node's store directly.
//!
//! Exit codes: 0 success, 1 the operation failed (stderr names the handle and the response
//! code), 2 bad usage. A stdout closed by its reader (`| head`) ends a command quietly, with 0.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod auth;
mod batchfile;
mod bench;
mod config;
mod datadir;
mod delegate;
mod demo;
mod from_sql;
mod import;
mod init;
mod keygen;
mod migrate;
mod resolve;
mod serve;
mod site;
mod store;
mod trace;
mod verify;

#[derive(Parser, Debug)]
#[command(
    name = "suyuan",
    version,
    about = "Suyuan (溯源): industrial-internet identifier resolution secondary node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make an administrator's RSA key pair (admpriv.pem/.bin, admpub.pem/.bin).
    Keygen(keygen::KeygenArgs),
    /// Create a node's store for a prefix, with its administrator and the node's key.
    Init(init::InitArgs),
    /// Run the node.
    Serve(serve::ServeArgs),
    /// Resolve a handle over the Handle wire protocol.
    Resolve(resolve::ResolveArgs),
    /// Trace a record's provenance through a running node's trace API.
    Trace(trace::TraceArgs),
    /// Check a trace or proof answer against the transparency log's key: every value shown
    /// is the one logged, every entry is in a signed checkpoint (exit 0 all hold, 1 any fails).
    Verify(verify::VerifyArgs),
    /// Register records in bulk from JSON Lines, a Handle.Net batch file or a Handle.Net SQL
    /// database (re-running writes nothing).
    Import(import::ImportArgs),
    /// Copy every prefix and record from one store to another (embedded or PostgreSQL), then
    /// verify counts and a digest on both sides (re-running continues an interrupted copy).
    Migrate(migrate::MigrateArgs),
    /// Rebuild the link and alias indexes of a stopped node's store.
    Reindex(trace::ReindexArgs),
    /// Load generation and the machine's ceiling (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Create or update a prefix's record 0.NA/PREFIX at a top-level node (re-running with the
    /// same inputs writes nothing).
    Delegate(delegate::DelegateArgs),
    /// Multi-server sites: assemble the site's siteinfo.json from each server's own.
    Site(site::SiteArgs),
}

/// Default Handle address of a node on this machine.
pub const DEFAULT_HANDLE_ADDR: &str = "127.0.0.1:2641";

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address of the form IP:PORT"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, never stdout (stdout carries the ready line and command output).
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // The load generator runs its own single-thread runtime (so it can be pinned to a core).
    let command = match cli.command {
        Command::Bench(a) => return exit(bench::run(a)),
        c => c,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("suyuan: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match command {
            Command::Bench(_) => unreachable!("handled above"),
            Command::Keygen(a) => keygen::run(a),
            Command::Init(a) => init::run(a),
            Command::Serve(a) => serve::run(a).await,
            Command::Resolve(a) => resolve::run(a).await,
            Command::Trace(a) => trace::run(a).await,
            Command::Verify(a) => verify::run(a).await,
            Command::Import(a) => import::run(a).await,
            Command::Migrate(a) => tokio::task::block_in_place(|| migrate::run(a)),
            Command::Reindex(a) => trace::reindex(a),
            Command::Site(a) => site::run(a),
            Command::Delegate(a) => delegate::run(a).await,
        }
    });
    exit(result)
}

/// Command output on stdout. `println!` panics when the reader has gone (`suyuan trace … |
/// head -1`); this reports [`StdoutClosed`] instead, and the command ends quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// The reader of stdout has gone: not a failure of the command, nothing more to say.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        r => Ok(r?),
    }
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if e.chain().any(|c| c.is::<StdoutClosed>()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suyuan: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: library errors that already name
/// their cause in their own message (`network error talking to A: Connection refused`) would
/// otherwise repeat it.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}
