//! The `suyuan` binary: the command line of the node (design section 5). The commands arrive
//! with the issues that build them; this first build only reports its version.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "suyuan",
    version,
    about = "Suyuan: industrial-internet identifier resolution secondary node"
)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
