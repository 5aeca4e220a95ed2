//! The `flowercam` binary: parse the command line, resolve the configuration,
//! dispatch a subcommand.

use clap::Parser;
use color_eyre::eyre::{Result, bail};
use flowercam::cli::{Cli, Command};
use flowercam::commands;

fn main() -> Result<()> {
    color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install()?;
    let cli = Cli::parse();
    let config = commands::resolve_config(&cli.common)?;
    commands::init_threads(&config);
    match &cli.command {
        Some(Command::Explore) => commands::explore(&config),
        Some(Command::Synth(args)) => commands::synth(&config, &cli.common, args),
        Some(Command::Fetch(args)) => commands::fetch(&config, args),
        Some(Command::Predict(args)) => commands::predict(&config, args),
        Some(Command::Bench(args)) => commands::bench(&config, args),
        None => bail!("the training workflow is not built yet; see `flowercam --help` for what is"),
    }
}
