//! The full-screen interface: a live training dashboard and keyboard-driven
//! Grad-CAM browsing, for `flowercam run`, `demo` and `view`.
//!
//! One tokio task selects over the keyboard, the worker's events, the
//! Grad-CAM browser's answers, finished image encodings and a 30 Hz tick;
//! it redraws only when something changed. Training runs on the worker
//! thread, CAMs on the browser thread, image encoding on the encoder thread,
//! so the UI never waits for any of them.

pub mod app;
pub mod browser_thread;
pub mod fixture;
pub mod pictures;
pub mod terminal;
pub mod theme;
pub mod ui;

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui_image::picker::{Picker, ProtocolType};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::Config;
use crate::train::{Event, Phase, StopToken};
use crate::workflow::WorkflowOptions;
use app::{App, Command, RunState};
use browser_thread::{Reply, Request};
use pictures::{EncodeJob, PicId, Pictures};

/// Whether the person asked for no colour (<https://no-color.org>).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Everything the UI task hears.
enum Msg {
    Worker(Event),
    Browser(Reply),
    Encoded(EncodeJob),
    /// SIGTERM / SIGHUP (Ctrl-C arrives as a key in raw mode).
    Signal,
}

/// `--graphics`: which protocol, decided after entering the alternate
/// screen and before the keyboard is read (the query reads stdin).
fn make_picker(graphics: &str) -> Picker {
    let forced = match graphics {
        "halfblocks" => return Picker::halfblocks(),
        "kitty" => Some(ProtocolType::Kitty),
        "sixel" => Some(ProtocolType::Sixel),
        "iterm2" => Some(ProtocolType::Iterm2),
        _ => None,
    };
    let mut picker = Picker::from_query_stdio().unwrap_or_else(|e| {
        tracing::info!("terminal graphics query failed ({e}); using half-blocks");
        Picker::halfblocks()
    });
    if let Some(p) = forced {
        picker.set_protocol_type(p);
    }
    tracing::info!("graphics protocol: {:?}", picker.protocol_type());
    picker
}

/// Check a `--graphics` value before the screen changes.
pub fn check_graphics(graphics: &str) -> Result<(), String> {
    match graphics {
        "auto" | "kitty" | "sixel" | "iterm2" | "halfblocks" => Ok(()),
        other => Err(format!(
            "--graphics {other:?}: expected auto, kitty, sixel, iterm2 or halfblocks"
        )),
    }
}

/// How a TUI session ended.
#[derive(Debug)]
pub struct Outcome {
    pub state: RunState,
    pub run_dir: Option<PathBuf>,
    /// Input-to-redraw latencies in milliseconds, one per key press.
    pub latencies_ms: Vec<f64>,
}

/// Train with the dashboard: the workflow on a worker thread, this thread
/// drawing. Returns when the person quits.
pub fn run_live(config: &Config, options: WorkflowOptions, graphics: &str) -> Result<Outcome, String> {
    check_graphics(graphics)?;
    let (tx, rx) = unbounded_channel();
    let stop = StopToken::new();
    {
        let stop = stop.clone();
        let tx = tx.clone();
        // Ctrl-C is a key in raw mode; this catches SIGTERM and SIGHUP (a closed SSH session).
        let _ = ctrlc::set_handler(move || {
            stop.stop();
            let _ = tx.send(Msg::Signal);
        });
    }
    let app = App::new(&config.name, options.label.clone(), no_color());
    let worker_tx = tx.clone();
    let session = Session::start(graphics, tx, || {
        // Detached: the worker always ends with Finished, Stopped or Failed,
        // which the loop waits for before leaving a running workflow.
        crate::workflow::spawn(config.clone(), options, stop.clone(), move |ev| {
            let _ = worker_tx.send(Msg::Worker(ev));
        })
        .map(drop)
        .map_err(|e| format!("cannot start the worker thread: {e}"))
    })?;
    session.run(app, config, Some(stop), rx, None)
}

/// Browse a finished run folder.
pub fn view(run_dir: &Path, graphics: &str) -> Result<Outcome, String> {
    check_graphics(graphics)?;
    let summary = crate::browse::read_summary(run_dir)?;
    let config = crate::browse::read_config(run_dir)?;
    let table = match crate::data::load(&config) {
        Ok(ds) => ds.class_table(),
        Err(e) => {
            tracing::warn!("{e}");
            Vec::new()
        }
    };
    let app = App::from_summary(summary, run_dir.to_path_buf(), table, no_color());
    let (tx, rx) = unbounded_channel();
    let session = Session::start(graphics, tx, || Ok(()))?;
    session.run(app, &config, None, rx, Some(run_dir.to_path_buf()))
}

/// The terminal, pictures and channels of one session.
struct Session {
    guard: terminal::Guard,
    pictures: Pictures,
    tx: UnboundedSender<Msg>,
}

impl Session {
    /// Enter full-screen mode, pick the graphics protocol, start the
    /// encoder thread, then `start_work` (so nothing prints over the query).
    fn start(
        graphics: &str,
        tx: UnboundedSender<Msg>,
        start_work: impl FnOnce() -> Result<(), String>,
    ) -> Result<Session, String> {
        let guard = terminal::enter().map_err(|e| format!("cannot use the terminal: {e}"))?;
        let picker = make_picker(graphics);
        let (enc_tx, enc_rx) = std::sync::mpsc::channel::<EncodeJob>();
        let back = tx.clone();
        std::thread::Builder::new()
            .name("flowercam-encoder".into())
            .spawn(move || {
                for job in enc_rx {
                    if back.send(Msg::Encoded(job.run())).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the encoder thread: {e}"))?;
        start_work()?;
        Ok(Session {
            guard,
            pictures: Pictures::new(picker, no_color(), Some(enc_tx))
                .with_palette256(!pictures::terminal_has_truecolor()),
            tx,
        })
    }

    fn run(
        self,
        app: App,
        config: &Config,
        stop: Option<StopToken>,
        rx: UnboundedReceiver<Msg>,
        view_dir: Option<PathBuf>,
    ) -> Result<Outcome, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the event loop: {e}"))?;
        let Session { guard, pictures, tx } = self;
        let mut ui = Ui {
            app,
            pictures,
            guard,
            tx,
            browser: None,
            config: config.clone(),
            stop,
            latencies_ms: Vec::new(),
            started: Instant::now(),
        };
        if let Some(dir) = view_dir {
            ui.start_browser(dir.clone());
            ui.load_filters(&dir);
        }
        let result = runtime.block_on(ui.event_loop(rx));
        let Ui {
            app,
            guard,
            latencies_ms,
            ..
        } = ui;
        drop(guard);
        result?;
        if !latencies_ms.is_empty() {
            let mut sorted = latencies_ms.clone();
            sorted.sort_by(f64::total_cmp);
            tracing::info!(
                "input-to-redraw latency over {} keys: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                sorted.len(),
                sorted[sorted.len() / 2],
                sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)],
                sorted[sorted.len() - 1]
            );
        }
        Ok(Outcome {
            state: app.state,
            run_dir: app.run_dir,
            latencies_ms,
        })
    }
}

struct Ui {
    app: App,
    pictures: Pictures,
    guard: terminal::Guard,
    tx: UnboundedSender<Msg>,
    browser: Option<Sender<Request>>,
    config: Config,
    stop: Option<StopToken>,
    latencies_ms: Vec<f64>,
    started: Instant,
}

/// Redraw at most this often for worker events (keys redraw at once).
const FRAME: Duration = Duration::from_millis(33);

impl Ui {
    async fn event_loop(&mut self, mut rx: UnboundedReceiver<Msg>) -> Result<(), String> {
        let mut keys = EventStream::new();
        let mut tick = tokio::time::interval(FRAME);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut dirty = true;
        let mut shown_second = 0u64;
        let mut last_draw: Option<Instant> = None;
        loop {
            let mut quit = false;
            let mut key_at = None;
            tokio::select! {
                key = keys.next() => match key {
                    Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => {
                        key_at = Some(Instant::now());
                        let commands = self.app.on_key(k);
                        quit = self.execute(commands);
                        dirty = true;
                    }
                    Some(Ok(TermEvent::Resize(..))) => dirty = true,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("reading the keyboard: {e}")),
                    None => quit = true,
                },
                msg = rx.recv() => {
                    if let Some(msg) = msg {
                        quit = self.handle(msg);
                        dirty = true;
                    }
                }
                _ = tick.tick() => {
                    self.app.now = self.started.elapsed().as_secs_f64();
                    let second = self.app.elapsed() as u64;
                    if second != shown_second {
                        shown_second = second;
                        dirty = true;
                    }
                }
            }
            if quit {
                return Ok(());
            }
            // Keys redraw at once; worker traffic waits for the tick.
            let frame_due = last_draw.is_none_or(|t| t.elapsed() >= FRAME);
            if dirty && (key_at.is_some() || frame_due) {
                self.draw()?;
                last_draw = Some(Instant::now());
                dirty = false;
                if let Some(t) = key_at {
                    self.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
    }

    fn draw(&mut self) -> Result<(), String> {
        let (app, pictures) = (&self.app, &mut self.pictures);
        self.guard
            .terminal
            .draw(|f| {
                let area = f.area();
                ui::render(app, pictures, area, f.buffer_mut())
            })
            .map_err(|e| format!("drawing: {e}"))?;
        Ok(())
    }

    /// Carry out key commands; `true` to leave.
    fn execute(&mut self, commands: Vec<Command>) -> bool {
        let mut quit = false;
        for c in commands {
            match c {
                Command::Stop => {
                    if let Some(s) = &self.stop {
                        s.stop();
                    }
                }
                Command::Quit => {
                    if self.app.state.is_active() {
                        // Second Ctrl-C while stopping: leave now; finished files are already on disk.
                        terminal::restore();
                        eprintln!("flowercam: quit before the worker finished its batch");
                        std::process::exit(130);
                    }
                    quit = true;
                }
                Command::Browse(q) => {
                    if let Some(b) = &self.browser {
                        let _ = b.send(Request::Show(q));
                    }
                }
            }
        }
        quit
    }

    fn start_browser(&mut self, run_dir: PathBuf) {
        let device = match crate::device::parse_device(&self.config.device).and_then(crate::device::open) {
            Ok(d) => d,
            Err(e) => {
                self.app.cam.note = Some(e);
                return;
            }
        };
        let tx = self.tx.clone();
        match browser_thread::spawn(run_dir, self.config.clone(), device, move |r| {
            let _ = tx.send(Msg::Browser(r));
        }) {
            Ok(b) => {
                let _ = b.send(Request::Load);
                self.browser = Some(b);
            }
            Err(e) => self.app.cam.note = Some(format!("cannot start the Grad-CAM browser: {e}")),
        }
    }

    fn reload_browser(&mut self) {
        if let Some(b) = &self.browser {
            let _ = b.send(Request::Load);
        }
    }

    fn load_filters(&mut self, dir: &Path) {
        for (id, file) in [
            (PicId::Filters, "filters_conv1.png"),
            (PicId::Activations, "activations_layer4.png"),
        ] {
            match image::open(dir.join(file)) {
                Ok(img) => self.pictures.set(id, img.to_rgb8()),
                Err(e) => tracing::info!("{file}: {e}"),
            }
        }
    }

    fn reload_summary(&mut self) {
        if let Some(dir) = &self.app.run_dir {
            match crate::browse::read_summary(dir) {
                Ok(s) => self.app.summary = Some(s),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// Fold in a message; `true` to leave.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Worker(ev) => {
                self.app.apply(&ev);
                match &ev {
                    Event::DatasetReady { .. } => {
                        if let Some(dir) = self.app.run_dir.clone() {
                            self.start_browser(dir);
                        }
                    }
                    Event::PhaseDone { phase, .. } => {
                        self.reload_summary();
                        if matches!(phase, Phase::FeatureExtraction | Phase::FineTuning) {
                            self.reload_browser();
                        }
                    }
                    Event::Artifact {
                        phase: Phase::GradcamFe,
                        ..
                    } => {
                        if let Some(dir) = self.app.run_dir.clone() {
                            self.load_filters(&dir);
                        }
                    }
                    Event::Finished { .. } | Event::Stopped { .. } | Event::Failed { .. } => {
                        self.reload_summary();
                        return self.app.quit_when_stopped;
                    }
                    _ => {}
                }
                false
            }
            Msg::Browser(reply) => {
                match reply {
                    Reply::Progress(done, total) => {
                        self.app.cam.note = Some(format!("decoding test images for Grad-CAM: {done}/{total}"))
                    }
                    Reply::Ready { models, thumbnails } => {
                        for (class, img) in thumbnails {
                            self.pictures.set(PicId::Thumb(class), img);
                            if !self.app.thumbnails.contains(&class) {
                                self.app.thumbnails.push(class);
                            }
                        }
                        let commands = self.app.browser_ready(models);
                        return self.execute(commands);
                    }
                    Reply::View(view) => {
                        if self.app.show_sample(&view) {
                            match &view.image {
                                Some(img) => self.pictures.set(PicId::Sample, img.clone()),
                                None => self.pictures.remove(PicId::Sample),
                            }
                            for (i, m) in view.models.iter().enumerate() {
                                self.pictures.set(PicId::Overlay(i), m.overlay.clone());
                            }
                        }
                    }
                    Reply::Error(e) => {
                        self.app.cam.waiting = false;
                        self.app.cam.models.clear();
                        self.app.cam.note = Some(e);
                    }
                }
                false
            }
            Msg::Encoded(job) => {
                self.pictures.encoded(job);
                false
            }
            Msg::Signal => {
                let commands = self.app.interrupt();
                self.execute(commands)
            }
        }
    }
}
