//! What the worker tells its listeners (the TUI, headless printing). Events
//! arrive in this order for a run: `RunStarted` → `DatasetProgress`* → `DatasetReady` →
//! for each phase: `PhaseStarted` → (`Batch`* → `EpochDone`)* → `PhaseDone`
//! → … → `Finished`; `Failed` or `Stopped` can end the stream instead.

use std::path::PathBuf;

use super::metrics::EpochMetrics;
use crate::data::ClassRow;

/// The workflow's phases, with their `summary.json` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Explore,
    FeatureExtraction,
    GradcamFe,
    FineTuning,
    Compare,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::Explore => "explore",
            Phase::FeatureExtraction => "feature_extraction",
            Phase::GradcamFe => "gradcam_fe",
            Phase::FineTuning => "fine_tuning",
            Phase::Compare => "compare",
        }
    }

    /// The header a person reads.
    pub fn title(self) -> &'static str {
        match self {
            Phase::Explore => "Phase 1: Explore",
            Phase::FeatureExtraction => "Phase 2: Feature extraction",
            Phase::GradcamFe => "Phase 3: Grad-CAM of the feature-extraction model",
            Phase::FineTuning => "Phase 4: Fine-tuning",
            Phase::Compare => "Phase 5: Compare",
        }
    }
}

/// A message from the worker.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run folder exists; everything later is written into it.
    RunStarted {
        run_dir: PathBuf,
        device: String,
        /// The run's name, with the demo's label if any.
        name: String,
    },
    DatasetProgress {
        done: usize,
        total: usize,
    },
    DatasetReady {
        root: PathBuf,
        table: Vec<ClassRow>,
        skipped: Vec<(PathBuf, String)>,
    },
    PhaseStarted {
        phase: Phase,
        epochs: usize,
        batches: usize,
        trainable: String,
    },
    Batch {
        phase: Phase,
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
        images_per_second: f64,
    },
    EpochDone {
        phase: Phase,
        metrics: Box<EpochMetrics>,
        epochs: usize,
    },
    PhaseDone {
        phase: Phase,
        seconds: f64,
    },
    /// Files written for a phase (CAM sheets, curves), for listeners to show.
    Artifact {
        phase: Phase,
        path: PathBuf,
    },
    Finished {
        run_dir: PathBuf,
    },
    Stopped {
        run_dir: PathBuf,
    },
    Failed {
        message: String,
    },
}
