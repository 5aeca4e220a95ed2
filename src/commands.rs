//! The subcommands: each turns resolved configuration into work and prints
//! what a person needs to see. Errors carry context for `main` to show.

use std::io::IsTerminal;

use color_eyre::eyre::{Context, Result, bail, eyre};

use crate::cli::{BenchArgs, Common, FetchArgs, PredictArgs, RunArgs, SynthArgs, ViewArgs};
use crate::config::Config;
use crate::data;
use crate::model::ConvPath;

/// The demo's layer over the defaults, shipped inside the binary.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

/// Layer the command-line flags over the configuration file over the
/// defaults (and, for the demo, over `config/demo.toml`).
pub fn resolve_config(common: &Common, demo: bool) -> Result<Config> {
    let mut layers = Vec::new();
    if demo {
        layers.push(("config/demo.toml (built in)".to_string(), DEMO_TOML.to_string()));
    }
    if let Some(path) = &common.config {
        let text =
            std::fs::read_to_string(path).wrap_err_with(|| format!("cannot read config file {}", path.display()))?;
        layers.push((path.display().to_string(), text));
    }
    let mut config = Config::from_layers(&layers)?;
    if let Some(d) = &common.data {
        config.data.root = d.clone();
    }
    if let Some(w) = &common.weights {
        config.model.weights = w.clone();
    }
    if let Some(d) = &common.device {
        crate::device::parse_device(d).map_err(|e| eyre!("--device: {e}"))?;
        config.device = d.clone();
    }
    if let Some(t) = common.threads {
        config.threads = t;
    }
    if let Some(e) = common.epochs {
        config.train.feature_extraction.epochs = e;
        config.train.fine_tuning.epochs = e;
    }
    if let Some(s) = common.seed {
        config.seed = s;
    }
    if let Some(o) = &common.out {
        config.output.dir = o.clone();
    }
    Ok(config)
}

/// Size the global thread pool once, before any parallel work. Candle's
/// own kernels (its matmul, elementwise loops) size themselves from
/// `RAYON_NUM_THREADS`, so `--threads` is written there too, or they would
/// ask for every core on a smaller pool.
///
/// Call it first thing in `main`, while the process has one thread: setting
/// an environment variable races with any other thread reading one.
pub fn init_threads(config: &Config) {
    if config.threads > 0 {
        // SAFETY: main calls this before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", config.threads.to_string()) };
        // Fails only if already initialised, which is harmless.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build_global();
    }
}

/// A progress bar on a terminal, nothing otherwise (headless logs stay clean).
fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// `flowercam explore`: the class table.
pub fn explore(config: &Config) -> Result<()> {
    let ds = data::load(config)?;
    println!("{} dataset at {}", ds.format, ds.root.display());
    print!("{}", ds.class_table_text());
    Ok(())
}

/// `flowercam synth`: a synthetic dataset in the official layout.
pub fn synth(config: &Config, common: &Common, args: &SynthArgs) -> Result<()> {
    let out = common
        .out
        .clone()
        .ok_or_else(|| eyre!("flowercam synth needs --out DIR, the folder to write the dataset into"))?;
    if args.size < 16 {
        bail!("--size {}: images must be at least 16 pixels wide", args.size);
    }
    let labels = data::flowers102::select_classes(&config.data)?;
    let shortcut = match &args.shortcut {
        None => None,
        Some(name) => {
            let wanted = name.trim().to_lowercase();
            let pos = labels.iter().position(|&l| data::official::CLASS_NAMES[l] == wanted);
            Some(pos.ok_or_else(|| {
                let selected: Vec<&str> = labels.iter().map(|&l| data::official::CLASS_NAMES[l]).collect();
                eyre!(
                    "--shortcut {name:?} is not one of the selected classes: {}",
                    selected.join(", ")
                )
            })?)
        }
    };
    let spec = data::synth::SynthSpec {
        labels,
        images_per_class: args.images_per_class,
        size: args.size,
        shortcut,
        seed: config.seed,
        same_species: args.same_species,
    };
    let pb = bar(0, "drawing flowers");
    let summary = data::synth::write(&out, &spec, &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })
    .wrap_err_with(|| format!("writing synthetic dataset to {}", out.display()))?;
    pb.finish_and_clear();
    println!(
        "wrote {} images ({} train, {} val, {} test) with masks to {}",
        summary.images,
        summary.train,
        summary.val,
        summary.test,
        out.display()
    );
    Ok(())
}

/// `flowercam fetch`: Flowers102 into `<data>/flowers-102/`.
pub fn fetch(config: &Config, args: &FetchArgs) -> Result<()> {
    let dir = config.data.root.join("flowers-102");
    let files: Vec<_> = data::fetch::FLOWERS_FILES
        .into_iter()
        .filter(|f| !(args.no_segmentations && f.name == "102segmentations.tgz"))
        .collect();
    let pb = indicatif::ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>22} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
    } else {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let outcomes = data::fetch::fetch_flowers(&args.mirror, &dir, &files, &mut |name, done, total| {
        pb.set_message(name.to_string());
        pb.set_length(total.unwrap_or(done));
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    for o in outcomes {
        match o {
            data::fetch::FetchOutcome::AlreadyThere(n) => println!("{n}: already there, verified"),
            data::fetch::FetchOutcome::Downloaded(n) => println!("{n}: downloaded and verified"),
        }
    }
    println!("Flowers102 is in {}", dir.display());
    Ok(())
}

/// Open the configured device with a helpful error.
pub fn open_device(config: &Config) -> Result<candle_core::Device> {
    let spec = crate::device::parse_device(&config.device).map_err(|e| eyre!(e))?;
    crate::device::open(spec).map_err(|e| eyre!(e))
}

/// Load the network `--weights` names (a checkpoint, ImageNet weights, or
/// random), with the class names a checkpoint carries.
pub fn load_model(
    config: &Config,
    device: &candle_core::Device,
    num_classes_if_random: usize,
) -> Result<(crate::model::ResNet, Option<Vec<String>>)> {
    let pb = indicatif::ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let loaded = crate::model::load_configured(config, device, num_classes_if_random, &mut |done, total| {
        pb.set_length(total.unwrap_or(done));
        pb.set_position(done);
    });
    pb.finish_and_clear();
    loaded.map_err(|e| eyre!(e))
}

/// `flowercam predict`.
pub fn predict(config: &Config, args: &PredictArgs) -> Result<()> {
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let cam = match &args.cam {
        Some(method) => Some(
            crate::predict::CamRequest::parse(method, &args.cam_layer, &args.cam_target, args.cam_out.clone())
                .map_err(|e| eyre!(e))?,
        ),
        None if args.cam_out.is_some() => bail!("--cam-out needs --cam METHOD"),
        None => None,
    };
    let device = open_device(config)?;
    let (model, classes) = load_model(config, &device, 1000)?;
    let preds = crate::predict::predict(
        &model,
        classes.as_deref(),
        &args.images,
        config,
        args.top,
        cam.as_ref(),
        &device,
    )
    .map_err(|e| eyre!(e))?;
    for p in &preds {
        if args.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            println!("{}", crate::predict::format_line(p));
        }
    }
    Ok(())
}

/// `flowercam bench`.
pub fn bench(config: &Config, args: &BenchArgs) -> Result<()> {
    let device = open_device(config)?;
    println!("flowercam bench on {}", crate::device::describe(&device));
    if args.workflow {
        let mut config = config.clone();
        if config.model.weights == "auto" && crate::model::find_cached_weights().is_none() {
            // Offline machines: time the same arithmetic with random weights.
            config.model.weights = "none".into();
        }
        return crate::bench::workflow(&config).map_err(|e| eyre!(e));
    }
    let all = args.what == "all";
    if all || args.what == "data" {
        crate::bench::data(config, args.images.max(8))?;
    }
    if all || args.what == "model" {
        let paths = match args.conv.as_str() {
            "both" => vec![ConvPath::Stock, ConvPath::Fast],
            name => vec![ConvPath::from_name(name).ok_or_else(|| eyre!("--conv {name:?} is unknown"))?],
        };
        crate::bench::model(args.batch.max(1), args.size.max(32), args.iters.max(1), &paths, &device)?;
    }
    if all || args.what == "conv" {
        crate::bench::convs(args.batch.max(1), args.size.max(32), args.iters.max(1));
    }
    if all || args.what == "cam" {
        crate::bench::cams(args.size.max(32), 32, &device)?;
    }
    if all || args.what == "tui" {
        crate::bench::tui(200, 50, 200);
    }
    Ok(())
}

/// Where the demo keeps its synthetic dataset, reused between runs.
fn demo_data_dir(config: &Config) -> std::path::PathBuf {
    config.output.dir.join("demo-data")
}

/// Write the demo's dataset unless an identical one is already there.
fn ensure_demo_data(config: &Config) -> Result<std::path::PathBuf> {
    let dir = demo_data_dir(config);
    let labels = data::flowers102::select_classes(&config.data)?;
    let shortcut = labels
        .iter()
        .position(|&l| data::official::CLASS_NAMES[l] == "wild pansy")
        .or(Some(labels.len() - 1));
    let spec = data::synth::SynthSpec {
        labels,
        images_per_class: Some(40),
        size: 160,
        shortcut,
        seed: config.seed,
        same_species: false,
    };
    let stamp = format!("{:?}", spec);
    let stamp_file = dir.join(".flowercam-demo-spec");
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(dir);
    }
    eprintln!("writing the demo's synthetic dataset to {} ...", dir.display());
    data::synth::write(&dir, &spec, &|_, _| {})
        .wrap_err_with(|| format!("writing the demo dataset to {}", dir.display()))?;
    crate::fsutil::write_atomic(&stamp_file, stamp.as_bytes())?;
    Ok(dir)
}

/// Whether this invocation draws the full-screen interface: `run`, `demo`
/// and `view` on a terminal without `--headless`.
pub fn uses_tui(command: Option<&crate::cli::Command>, common: &Common) -> bool {
    use crate::cli::Command;
    let full_screen = matches!(
        command,
        None | Some(Command::Run(_) | Command::Demo(_) | Command::View(_))
    );
    full_screen && !common.headless && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// `flowercam run` and `flowercam demo`: the workflow on a worker thread,
/// shown in the TUI on a terminal, else printed as lines. Ctrl-C stops
/// after the current batch and keeps what finished; a second one exits at once.
pub fn run_workflow(config: &Config, common: &Common, args: &RunArgs, demo: bool) -> Result<()> {
    let phases = crate::workflow::PhaseSet::parse(&args.phases).map_err(|e| eyre!(e))?;
    crate::tui::check_graphics(&common.graphics).map_err(|e| eyre!(e))?;
    let mut config = config.clone();
    if demo {
        config.data.root = ensure_demo_data(&config)?;
    }
    let label = demo.then(|| "demo: synthetic flowers with a planted shortcut, random weights".to_string());
    let options = crate::workflow::WorkflowOptions { phases, label };
    if uses_tui(None, common) {
        let outcome = crate::tui::run_live(&config, options, &common.graphics).map_err(|e| eyre!(e))?;
        return report_outcome(&outcome);
    }
    if let Some(l) = &options.label {
        println!("flowercam {l}");
    }
    let stop = crate::train::StopToken::new();
    let handler_stop = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if handler_stop.is_stopped() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current batch (Ctrl-C again to quit at once)...");
        handler_stop.stop();
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = crate::workflow::spawn(config, options, stop.clone(), move |ev| {
        let _ = tx.send(ev);
    })?;
    let mut printer = crate::headless::Printer::default();
    for event in rx {
        printer.observe(&event);
        for line in printer.lines(&event) {
            println!("{line}");
        }
    }
    match worker.join() {
        Ok(Ok(_)) if stop.is_stopped() => Err(Stopped.into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(message)) => Err(eyre!(message)),
        Err(_) => Err(eyre!("the worker thread died")),
    }
}

/// A run the person stopped (Ctrl-C, `q`, SIGTERM): what finished is saved
/// and said, and `main` exits with 130, as a shell expects of an interrupted
/// command, so a script can tell a stopped run from a finished one.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped before the end")
    }
}

impl std::error::Error for Stopped {}

/// The exit status of a stopped run (128 + SIGINT).
pub const STOPPED_EXIT_CODE: i32 = 130;

/// The lines left on the normal screen after the TUI closes.
fn report_outcome(outcome: &crate::tui::Outcome) -> Result<()> {
    use crate::tui::app::RunState;
    let dir = outcome
        .run_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "(no run folder)".into());
    match &outcome.state {
        RunState::Finished => println!("flowercam: finished; results in {dir} (report.md)"),
        RunState::Stopped | RunState::Stopping => {
            println!("flowercam: stopped; finished phases are saved in {dir}");
            return Err(Stopped.into());
        }
        RunState::Viewing => println!("flowercam: closed {dir}"),
        RunState::Failed(message) => bail!("{message} (partial results in {dir})"),
        RunState::Preparing | RunState::Running => println!("flowercam: left while running; see {dir}"),
    }
    Ok(())
}

/// `flowercam view RUN_DIR`: a finished run in the TUI, or its report as text.
pub fn view(common: &Common, args: &ViewArgs) -> Result<()> {
    let dir = &args.run_dir;
    if !dir.join("summary.json").exists() {
        bail!(
            "{}: no summary.json here; pass a run folder written by flowercam run or demo (runs/<timestamp>-<name>)",
            dir.display()
        );
    }
    if uses_tui(None, common) {
        let outcome = crate::tui::view(dir, &common.graphics).map_err(|e| eyre!(e))?;
        return report_outcome(&outcome);
    }
    let summary = crate::browse::read_summary(dir).map_err(|e| eyre!(e))?;
    print!("{}", crate::report::markdown(&summary));
    Ok(())
}
