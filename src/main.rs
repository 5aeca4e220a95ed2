//! The `flowercam` binary: parse the command line, resolve the configuration,
//! dispatch a subcommand.

use clap::Parser;
use color_eyre::eyre::Result;
use flowercam::cli::{Cli, Command};
use flowercam::commands;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Panics keep color-eyre's report; ordinary errors are a person's problem
    // to fix, so they get one clean message (the full chain), not a backtrace.
    let _ = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install();
    if let Err(e) = run() {
        // A stopped run has already said so and where its results are.
        if e.downcast_ref::<commands::Stopped>().is_some() {
            std::process::exit(commands::STOPPED_EXIT_CODE);
        }
        if std::env::var_os("FLOWERCAM_DEBUG").is_some() {
            eprintln!("{e:?}");
        } else {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
        }
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let demo = matches!(cli.command, Some(Command::Demo(_)));
    let config = commands::resolve_config(&cli.common, demo)?;
    commands::init_threads(&config);
    init_logging(&config, commands::uses_tui(cli.command.as_ref(), &cli.common));
    match &cli.command {
        Some(Command::Explore) => commands::explore(&config),
        Some(Command::Synth(args)) => commands::synth(&config, &cli.common, args),
        Some(Command::Fetch(args)) => commands::fetch(&config, args),
        Some(Command::Predict(args)) => commands::predict(&config, args),
        Some(Command::Bench(args)) => commands::bench(&config, args),
        Some(Command::Run(args)) => commands::run_workflow(&config, &cli.common, args, false),
        Some(Command::Demo(args)) => commands::run_workflow(&config, &cli.common, args, true),
        Some(Command::View(args)) => commands::view(&cli.common, args),
        None => commands::run_workflow(
            &config,
            &cli.common,
            &flowercam::cli::RunArgs {
                phases: "explore,fe,gradcam,ft,compare".into(),
            },
            false,
        ),
    }
}

/// Logs go to stderr, except under the full-screen interface, where a
/// stray line would corrupt the screen: then to `<output dir>/flowercam.log`.
fn init_logging(config: &flowercam::config::Config, tui: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOWERCAM_LOG").unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let file = tui
        .then(|| {
            std::fs::create_dir_all(&config.output.dir).ok()?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(config.output.dir.join("flowercam.log"))
                .ok()
        })
        .flatten();
    match file {
        Some(f) => builder.with_ansi(false).with_writer(std::sync::Mutex::new(f)).init(),
        None if tui => builder.with_writer(std::io::sink).init(),
        None => builder.with_writer(std::io::stderr).without_time().init(),
    }
}
