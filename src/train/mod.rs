//! Training: the phase loop, its metrics and the events it reports.
//! Nothing here knows about the terminal.

pub mod events;
pub mod metrics;
pub mod trainer;

pub use events::{Event, Phase};
pub use trainer::{PhaseData, PhaseOutcome, PhaseSpec, StopToken, TrainError, train_phase};
