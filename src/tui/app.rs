//! The TUI's state and what keys do to it. Everything here is plain data:
//! the runtime feeds it worker events, browser answers and key presses, and
//! the render functions only read it, so fixed states make exact snapshots.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::browse::{CamTarget, Query, SampleFilter, SampleView};
use crate::cam::Method;
use crate::data::ClassRow;
use crate::report::{EpochRow, Summary};
use crate::train::{Event, Phase};

/// The five screens, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Explore,
    Train,
    GradCam,
    Compare,
    Filters,
}

impl Screen {
    pub const ALL: [Screen; 5] = [
        Screen::Explore,
        Screen::Train,
        Screen::GradCam,
        Screen::Compare,
        Screen::Filters,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Explore => "Explore",
            Screen::Train => "Train",
            Screen::GradCam => "Grad-CAM",
            Screen::Compare => "Compare",
            Screen::Filters => "Filters",
        }
    }

    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|&s| s == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Screen {
        let n = Screen::ALL.len() as isize;
        Screen::ALL[((self.index() as isize + by).rem_euclid(n)) as usize]
    }
}

/// Where the run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Decoding images, loading weights.
    Preparing,
    Running,
    /// Stop asked; the worker finishes its batch and writes what finished.
    Stopping,
    Finished,
    Stopped,
    Failed(String),
    /// `flowercam view`: a finished run read from disk.
    Viewing,
}

impl RunState {
    /// Whether the worker may still be computing.
    pub fn is_active(&self) -> bool {
        matches!(self, RunState::Preparing | RunState::Running | RunState::Stopping)
    }
}

/// One training phase as the Train screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseLog {
    pub phase: Phase,
    pub planned_epochs: usize,
    pub batches: usize,
    pub trainable: String,
    pub epochs: Vec<EpochRow>,
    /// Seconds the phase took, once done.
    pub seconds: Option<f64>,
    /// When it started, in the app clock (seconds).
    pub started_at: f64,
}

/// The latest batch of the running phase.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchState {
    pub phase: Phase,
    pub epoch: usize,
    pub batch: usize,
    pub batches: usize,
    pub loss: f64,
    pub images_per_second: f64,
}

/// One model's caption for the shown sample (the pixels live in `Pictures`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCaption {
    pub name: &'static str,
    pub predicted: usize,
    pub confidence: f32,
    pub target: usize,
    pub focus: Option<f64>,
}

/// What the Grad-CAM screen shows now.
#[derive(Debug, Clone, PartialEq)]
pub struct CamShown {
    pub query: Query,
    pub count: usize,
    pub test_index: Option<usize>,
    pub models: Vec<ModelCaption>,
}

impl CamShown {
    pub fn from_view(v: &SampleView) -> CamShown {
        CamShown {
            query: v.query,
            count: v.count,
            test_index: v.test_index,
            models: v
                .models
                .iter()
                .map(|m| ModelCaption {
                    name: m.name,
                    predicted: m.predicted,
                    confidence: m.confidence,
                    target: m.target,
                    focus: m.focus,
                })
                .collect(),
        }
    }
}

/// The Grad-CAM screen's selection and answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CamPanel {
    pub class: usize,
    pub index: usize,
    pub filter: SampleFilter,
    pub target: CamTarget,
    pub method: Method,
    pub shown: Option<CamShown>,
    /// The browser is working on the latest query.
    pub waiting: bool,
    /// Models the browser has loaded ("FE", "FT"); empty until one exists.
    pub models: Vec<&'static str>,
    /// Why nothing can be shown (loading, an error).
    pub note: Option<String>,
}

impl Default for CamPanel {
    fn default() -> Self {
        CamPanel {
            class: 0,
            index: 0,
            filter: SampleFilter::All,
            target: CamTarget::TrueLabel,
            method: Method::GradCam,
            shown: None,
            waiting: false,
            models: Vec::new(),
            note: None,
        }
    }
}

impl CamPanel {
    pub fn query(&self) -> Query {
        Query {
            class: self.class,
            filter: self.filter,
            index: self.index,
            target: self.target,
            method: self.method,
        }
    }
}

/// What the runtime must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Ask the worker to stop after its current batch.
    Stop,
    /// Leave now (the worker is done or the person insisted).
    Quit,
    /// Ask the browser for a sample.
    Browse(Query),
}

/// Everything the screens draw.
#[derive(Debug, Clone)]
pub struct App {
    pub screen: Screen,
    pub help: bool,
    pub confirm_quit: bool,
    /// Quit as soon as the worker has stopped.
    pub quit_when_stopped: bool,
    pub no_color: bool,
    pub state: RunState,
    /// Run name, with the demo's label.
    pub name: String,
    /// e.g. "demo: synthetic flowers…, random weights"; shown on every screen.
    pub label: Option<String>,
    pub device: String,
    pub run_dir: Option<PathBuf>,
    pub data_root: Option<PathBuf>,
    pub decoding: Option<(usize, usize)>,
    pub table: Vec<ClassRow>,
    pub skipped: Vec<(PathBuf, String)>,
    pub phases: Vec<PhaseLog>,
    pub current: Option<Phase>,
    pub batch: Option<BatchState>,
    /// Loss of every batch of the running (or last) training phase.
    pub batch_losses: Vec<f64>,
    pub summary: Option<Summary>,
    pub cam: CamPanel,
    /// Files the run wrote for the Filters screen, once they exist.
    pub filters_ready: bool,
    /// App clock in seconds (set by the runtime; fixed in tests).
    pub now: f64,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    /// Thumbnails loaded for these classes (pixels in `Pictures`).
    pub thumbnails: Vec<usize>,
}

impl App {
    pub fn new(name: &str, label: Option<String>, no_color: bool) -> App {
        App {
            screen: Screen::Train,
            help: false,
            confirm_quit: false,
            quit_when_stopped: false,
            no_color,
            state: RunState::Preparing,
            name: name.to_string(),
            label,
            device: String::new(),
            run_dir: None,
            data_root: None,
            decoding: None,
            table: Vec::new(),
            skipped: Vec::new(),
            phases: Vec::new(),
            current: None,
            batch: None,
            batch_losses: Vec::new(),
            summary: None,
            cam: CamPanel::default(),
            filters_ready: false,
            now: 0.0,
            started_at: 0.0,
            finished_at: None,
            thumbnails: Vec::new(),
        }
    }

    /// A finished run read from disk (`flowercam view`).
    pub fn from_summary(summary: Summary, run_dir: PathBuf, table: Vec<ClassRow>, no_color: bool) -> App {
        let mut app = App::new(&summary.name, None, no_color);
        app.screen = Screen::Compare;
        app.state = RunState::Viewing;
        app.device = summary.device.clone();
        app.data_root = summary.dataset.get("root").and_then(|v| v.as_str()).map(PathBuf::from);
        app.table = table;
        for (phase, p) in [
            (Phase::FeatureExtraction, &summary.feature_extraction),
            (Phase::FineTuning, &summary.fine_tuning),
        ] {
            if let Some(p) = p {
                app.phases.push(PhaseLog {
                    phase,
                    planned_epochs: p.epochs.len(),
                    batches: 0,
                    trainable: String::new(),
                    epochs: p.epochs.clone(),
                    seconds: summary.timings.get(phase.key()).copied(),
                    started_at: 0.0,
                });
            }
        }
        app.filters_ready = run_dir.join("filters_conv1.png").exists();
        app.run_dir = Some(run_dir);
        app.summary = Some(summary);
        app
    }

    /// Class names, from the summary once there is one, else the class table.
    pub fn class_names(&self) -> Vec<String> {
        match &self.summary {
            Some(s) if !s.classes.is_empty() => s.classes.clone(),
            _ => self.table.iter().map(|r| r.name.clone()).collect(),
        }
    }

    pub fn phase_log(&self, phase: Phase) -> Option<&PhaseLog> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// Fold a worker event into the state.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted { run_dir, device, name } => {
                self.run_dir = Some(run_dir.clone());
                self.device = device.clone();
                self.name = name.clone();
            }
            Event::DatasetProgress { done, total } => self.decoding = Some((*done, *total)),
            Event::DatasetReady { root, table, skipped } => {
                self.decoding = None;
                self.data_root = Some(root.clone());
                self.table = table.clone();
                self.skipped = skipped.clone();
                self.state = RunState::Running;
            }
            Event::PhaseStarted {
                phase,
                epochs,
                batches,
                trainable,
            } => {
                self.current = Some(*phase);
                if *epochs > 0 {
                    self.batch = None;
                    self.batch_losses.clear();
                    self.phases.retain(|p| p.phase != *phase);
                    self.phases.push(PhaseLog {
                        phase: *phase,
                        planned_epochs: *epochs,
                        batches: *batches,
                        trainable: trainable.clone(),
                        epochs: Vec::new(),
                        seconds: None,
                        started_at: self.now,
                    });
                }
            }
            Event::Batch {
                phase,
                epoch,
                batch,
                batches,
                loss,
                images_per_second,
            } => {
                self.batch_losses.push(*loss);
                self.batch = Some(BatchState {
                    phase: *phase,
                    epoch: *epoch,
                    batch: *batch,
                    batches: *batches,
                    loss: *loss,
                    images_per_second: *images_per_second,
                });
            }
            Event::EpochDone { phase, metrics, .. } => {
                if let Some(p) = self.phases.iter_mut().find(|p| p.phase == *phase) {
                    p.epochs.push(EpochRow::from(metrics.as_ref()));
                }
            }
            Event::PhaseDone { phase, seconds } => {
                if let Some(p) = self.phases.iter_mut().find(|p| p.phase == *phase) {
                    p.seconds = Some(*seconds);
                }
            }
            Event::Artifact { phase, .. } => {
                if *phase == Phase::GradcamFe {
                    self.filters_ready = true;
                }
            }
            Event::Finished { run_dir } => {
                self.run_dir = Some(run_dir.clone());
                self.state = RunState::Finished;
                self.finished_at = Some(self.now);
                self.current = None;
            }
            Event::Stopped { run_dir } => {
                self.run_dir = Some(run_dir.clone());
                self.state = RunState::Stopped;
                self.finished_at = Some(self.now);
                self.current = None;
            }
            Event::Failed { message } => {
                self.state = RunState::Failed(message.clone());
                self.finished_at = Some(self.now);
                self.current = None;
            }
        }
    }

    /// Store the browser's answer, unless a newer query has been made since;
    /// `true` if it was taken.
    pub fn show_sample(&mut self, view: &SampleView) -> bool {
        let asked = self.cam.query();
        let same = Query {
            index: asked.index % view.count.max(1),
            ..asked
        } == view.query
            || (view.count == 0 && view.query.class == asked.class && view.query.filter == asked.filter);
        if same {
            self.cam.index = view.query.index;
            self.cam.waiting = false;
            self.cam.shown = Some(CamShown::from_view(view));
        }
        same
    }

    /// What a key does. Returns commands for the runtime.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return vec![];
        }
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c'));
        if ctrl_c {
            return self.interrupt();
        }
        if self.confirm_quit {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                    self.confirm_quit = false;
                    self.stop_and_quit()
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                    self.confirm_quit = false;
                    vec![]
                }
                _ => vec![],
            };
        }
        if self.help {
            if matches!(key.code, KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')) {
                self.help = false;
            }
            return vec![];
        }
        match key.code {
            KeyCode::Char('q') if !self.state.is_active() => vec![Command::Quit],
            KeyCode::Char('q') | KeyCode::Esc if self.state.is_active() => {
                self.confirm_quit = true;
                vec![]
            }
            KeyCode::Char('?') => {
                self.help = true;
                vec![]
            }
            KeyCode::Tab => self.go(self.screen.step(1)),
            KeyCode::BackTab => self.go(self.screen.step(-1)),
            KeyCode::Char(d @ '1'..='5') => self.go(Screen::ALL[d as usize - '1' as usize]),
            _ if self.screen == Screen::GradCam => self.cam_key(key.code),
            _ => vec![],
        }
    }

    /// Ctrl-C (or SIGTERM/SIGHUP): stop cleanly the first time, leave at once the second.
    pub fn interrupt(&mut self) -> Vec<Command> {
        match self.state {
            RunState::Preparing | RunState::Running => self.stop_and_quit(),
            _ => vec![Command::Quit],
        }
    }

    fn stop_and_quit(&mut self) -> Vec<Command> {
        self.quit_when_stopped = true;
        if self.state.is_active() {
            self.state = RunState::Stopping;
            vec![Command::Stop]
        } else {
            vec![Command::Quit]
        }
    }

    fn go(&mut self, screen: Screen) -> Vec<Command> {
        self.screen = screen;
        if screen == Screen::GradCam && self.cam.shown.is_none() && !self.cam.models.is_empty() {
            return self.browse();
        }
        vec![]
    }

    fn browse(&mut self) -> Vec<Command> {
        if self.cam.models.is_empty() {
            return vec![];
        }
        self.cam.waiting = true;
        vec![Command::Browse(self.cam.query())]
    }

    fn cam_key(&mut self, code: KeyCode) -> Vec<Command> {
        let classes = self.class_names().len().max(1);
        let count = self.cam.shown.as_ref().map(|s| s.count).unwrap_or(0);
        match code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.cam.class = (self.cam.class + 1) % classes;
                self.cam.index = 0;
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.cam.class = (self.cam.class + classes - 1) % classes;
                self.cam.index = 0;
            }
            KeyCode::Right | KeyCode::Char('l') => self.cam.index = self.cam.index.wrapping_add(1) % count.max(1),
            KeyCode::Left | KeyCode::Char('h') => self.cam.index = (self.cam.index + count.max(1) - 1) % count.max(1),
            KeyCode::Char('m') => {
                self.cam.filter = self.cam.filter.next();
                self.cam.index = 0;
            }
            KeyCode::Char('t') => self.cam.target = self.cam.target.toggle(),
            KeyCode::Char('c') => self.cam.method = self.cam.method.next(),
            _ => return vec![],
        }
        self.browse()
    }

    /// The models the browser has; the first time, ask for the current sample.
    pub fn browser_ready(&mut self, models: Vec<&'static str>) -> Vec<Command> {
        self.cam.models = models;
        self.cam.note = None;
        self.cam.shown = None;
        if self.screen == Screen::GradCam {
            return self.browse();
        }
        vec![]
    }

    /// Seconds since the run started (frozen once it ended).
    pub fn elapsed(&self) -> f64 {
        self.finished_at.unwrap_or(self.now) - self.started_at
    }

    /// Estimated seconds left in the running phase, from its pace so far.
    pub fn phase_eta(&self) -> Option<f64> {
        let b = self.batch.as_ref()?;
        let log = self.phase_log(b.phase)?;
        let done = (b.epoch.saturating_sub(1)) * b.batches + b.batch;
        let total = log.planned_epochs * b.batches;
        if done == 0 || total <= done {
            return None;
        }
        let spent = self.now - log.started_at;
        Some(spent / done as f64 * (total - done) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn q_asks_while_training_and_quits_after() {
        let mut app = App::new("t", None, false);
        app.state = RunState::Running;
        assert!(app.on_key(key(KeyCode::Char('q'))).is_empty());
        assert!(app.confirm_quit);
        assert_eq!(app.on_key(key(KeyCode::Char('n'))), vec![]);
        assert!(!app.confirm_quit);
        app.on_key(key(KeyCode::Char('q')));
        assert_eq!(app.on_key(key(KeyCode::Char('y'))), vec![Command::Stop]);
        assert!(app.quit_when_stopped);
        assert_eq!(app.state, RunState::Stopping);

        let mut done = App::new("t", None, false);
        done.state = RunState::Finished;
        assert_eq!(done.on_key(key(KeyCode::Char('q'))), vec![Command::Quit]);
    }

    #[test]
    fn ctrl_c_stops_then_quits() {
        let mut app = App::new("t", None, false);
        app.state = RunState::Running;
        let cc = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(cc), vec![Command::Stop]);
        assert_eq!(app.on_key(cc), vec![Command::Quit]);
    }

    #[test]
    fn screens_cycle_and_digits_jump() {
        let mut app = App::new("t", None, false);
        app.on_key(key(KeyCode::Tab));
        assert_eq!(app.screen, Screen::GradCam);
        app.on_key(key(KeyCode::BackTab));
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.screen, Screen::Explore);
        app.on_key(key(KeyCode::BackTab));
        assert_eq!(app.screen, Screen::Filters);
        app.on_key(key(KeyCode::Char('4')));
        assert_eq!(app.screen, Screen::Compare);
    }

    #[test]
    fn gradcam_keys_build_queries() {
        let mut app = App::new("t", None, false);
        app.table = (0..3)
            .map(|i| ClassRow {
                name: format!("c{i}"),
                label: None,
                train: 1,
                test: 1,
                masks: 0,
            })
            .collect();
        assert!(
            app.on_key(key(KeyCode::Char('3'))).is_empty(),
            "no model yet: nothing to ask"
        );
        let cmds = app.browser_ready(vec!["FE"]);
        assert_eq!(cmds.len(), 1);
        let cmds = app.on_key(key(KeyCode::Char('k')));
        let Command::Browse(q) = &cmds[0] else { panic!() };
        assert_eq!(q.class, 2, "k wraps to the last class");
        app.on_key(key(KeyCode::Char('m')));
        app.on_key(key(KeyCode::Char('t')));
        let cmds = app.on_key(key(KeyCode::Char('c')));
        let Command::Browse(q) = &cmds[0] else { panic!() };
        assert_eq!(q.filter, SampleFilter::Correct);
        assert_eq!(q.target, CamTarget::Predicted);
        assert_eq!(q.method, Method::GradCamPlusPlus);
        assert!(app.cam.waiting);
    }
}
