//! The run directory a person keeps and shares: resolved `config.toml`,
//! `metrics.jsonl`, `summary.json`, checkpoints, Grad-CAM sheets, the curves
//! PNG and `report.md` tying them together. Every file is written atomically,
//! and rewritten as the run progresses, so a stopped run keeps what finished.

pub mod canvas;
pub mod curves;
pub mod sheet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cam::focus::ClassFocus;
use crate::fsutil::write_atomic;
use crate::train::metrics::EpochMetrics;

/// One epoch as DESIGN.md's `summary.json` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

impl From<&EpochMetrics> for EpochRow {
    fn from(m: &EpochMetrics) -> Self {
        EpochRow {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_acc: m.train_acc,
            test_loss: m.test_loss,
            test_acc: m.test_acc,
            seconds: m.seconds,
        }
    }
}

/// A training phase's results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseSummary {
    pub final_test_acc: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
    pub epochs: Vec<EpochRow>,
    pub images_per_second: f64,
    pub stopped: bool,
    pub checkpoint: Option<String>,
}

impl PhaseSummary {
    pub fn from_epochs(epochs: &[EpochMetrics], stopped: bool, checkpoint: Option<&str>) -> Option<PhaseSummary> {
        let last = epochs.last()?;
        Some(PhaseSummary {
            final_test_acc: last.test_acc,
            per_class_acc: last.per_class_acc.clone(),
            confusion: last.confusion.clone(),
            epochs: epochs.iter().map(EpochRow::from).collect(),
            images_per_second: epochs.iter().map(|e| e.images_per_second).sum::<f64>() / epochs.len() as f64,
            stopped,
            checkpoint: checkpoint.map(str::to_string),
        })
    }
}

/// Test images shown in the Grad-CAM figures, by index into the test split.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Samples {
    /// Phase 3: the first two correctly classified test images per class (FE model).
    pub phase3: Vec<usize>,
    /// Phase 5: the first test image of each class.
    pub phase5: Vec<usize>,
    /// Misclassified test images per model, for browsing.
    pub misclassified: BTreeMap<String, Vec<usize>>,
    /// Per model, every test image's `(predicted class, confidence)`, so a
    /// finished run can be browsed without classifying the test set again.
    pub predictions: BTreeMap<String, Vec<(usize, f32)>>,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Summary {
    pub name: String,
    pub classes: Vec<String>,
    pub dataset: BTreeMap<String, serde_json::Value>,
    pub device: String,
    pub weights: String,
    pub stopped: bool,
    pub finished: bool,
    pub feature_extraction: Option<PhaseSummary>,
    pub fine_tuning: Option<PhaseSummary>,
    pub timings: BTreeMap<String, f64>,
    pub focus: BTreeMap<String, Vec<ClassFocus>>,
    pub samples: Samples,
    pub files: Vec<String>,
}

/// A run's folder on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
    metrics: Vec<String>,
}

/// UTC `YYYYMMDD-HHMMSS` for folder names (civil-from-days, no time-zone data needed).
pub fn timestamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl RunDir {
    /// Create `<out>/<timestamp>-<name>/` (with a suffix if it already exists).
    pub fn create(out: &Path, name: &str) -> std::io::Result<RunDir> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!("{}-{}", timestamp(now), name.replace(['/', '\\', ' '], "_"));
        std::fs::create_dir_all(out)?;
        for i in 0..100 {
            let candidate = if i == 0 {
                out.join(&base)
            } else {
                out.join(format!("{base}-{i}"))
            };
            match std::fs::create_dir(&candidate) {
                Ok(()) => {
                    return Ok(RunDir {
                        path: candidate,
                        metrics: Vec::new(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "{}: too many runs named {base}",
            out.display()
        )))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Append one epoch line to `metrics.jsonl` (rewritten whole, atomically).
    pub fn append_metrics(&mut self, phase: &str, m: &EpochMetrics) -> std::io::Result<()> {
        let mut v = serde_json::to_value(m).map_err(std::io::Error::other)?;
        v["phase"] = serde_json::Value::String(phase.to_string());
        self.metrics.push(v.to_string());
        let mut body = self.metrics.join("\n");
        body.push('\n');
        write_atomic(&self.file("metrics.jsonl"), body.as_bytes())
    }

    pub fn write_summary(&self, s: &Summary) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
        write_atomic(&self.file("summary.json"), text.as_bytes())
    }

    pub fn write_png(&self, name: &str, img: &image::RgbImage) -> std::io::Result<PathBuf> {
        let path = self.file(name);
        write_png(&path, img)?;
        Ok(path)
    }
}

/// Write an RGB image as PNG, atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> std::io::Result<()> {
    use image::ImageEncoder;
    crate::fsutil::write_atomic_with(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .map_err(std::io::Error::other)
    })
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// `report.md`: the notebook's conclusions as a document.
pub fn markdown(s: &Summary) -> String {
    let mut md = format!("# flowercam run: {}\n\n", s.name);
    let state = if s.stopped {
        "stopped early; results below are what finished"
    } else if s.finished {
        "finished"
    } else {
        "in progress"
    };
    md += &format!("Status: {state}. Device: {}. Weights: {}.\n\n", s.device, s.weights);
    if let Some(root) = s.dataset.get("root") {
        md += &format!(
            "Dataset: `{}` — {} training / {} test images, {} classes.\n\n",
            root.as_str().unwrap_or(""),
            s.dataset.get("train").cloned().unwrap_or_default(),
            s.dataset.get("test").cloned().unwrap_or_default(),
            s.classes.len()
        );
    }
    md += "## Accuracy\n\n| approach | test accuracy | train accuracy | train/test gap |\n|---|---|---|---|\n";
    for (name, p) in [
        ("Feature extraction", &s.feature_extraction),
        ("Fine-tuning (layer4)", &s.fine_tuning),
    ] {
        if let Some(p) = p {
            let last = p.epochs.last().expect("phase summaries have epochs");
            md += &format!(
                "| {name} | {} | {} | {:+.1} pts |\n",
                pct(p.final_test_acc),
                pct(last.train_acc),
                (last.train_acc - last.test_acc) * 100.0
            );
        }
    }
    if let (Some(fe), Some(ft)) = (&s.feature_extraction, &s.fine_tuning) {
        let d = ft.final_test_acc - fe.final_test_acc;
        md += &format!("\nFine-tuning vs feature extraction: {:+.1} points.\n", d * 100.0);
        md += "\n### Per class\n\n| class | FE | FT | change |\n|---|---|---|---|\n";
        for (i, c) in s.classes.iter().enumerate() {
            let (a, b) = (
                fe.per_class_acc.get(i).copied().unwrap_or(0.0),
                ft.per_class_acc.get(i).copied().unwrap_or(0.0),
            );
            md += &format!("| {c} | {} | {} | {:+.1} |\n", pct(a), pct(b), (b - a) * 100.0);
        }
    }
    if s.files.iter().any(|f| f == "curves.png") {
        md += "\n## Curves\n\n![training curves](curves.png)\n";
    }
    if !s.focus.is_empty() {
        md += "\n## Focus: does the model look at the flower?\n\nShare of Grad-CAM energy on flower pixels (segmentation masks) and pointing-game hits, on the images of the Grad-CAM figures.\n\n| model | class | focus | pointing | flagged |\n|---|---|---|---|---|\n";
        for (model, rows) in &s.focus {
            for r in rows {
                md += &format!(
                    "| {model} | {} | {:.2} | {:.0}% | {} |\n",
                    r.class,
                    r.mean_energy,
                    r.pointing_hits * 100.0,
                    if r.flagged { "**possible shortcut**" } else { "" }
                );
            }
        }
    }
    for (file, title) in [
        (
            "gradcam_fe.png",
            "Grad-CAM of the feature-extraction model (2 correctly classified test images per class)",
        ),
        (
            "gradcam_compare.png",
            "Grad-CAM comparison: first test image of each class — image | FE | FT",
        ),
        (
            "filters_conv1.png",
            "conv1 filters of the feature-extraction model (frozen, so the pretrained filters)",
        ),
        (
            "activations_layer4.png",
            "First 16 layer4 activation maps of the first Grad-CAM image (FE model)",
        ),
    ] {
        if s.files.iter().any(|f| f == file) {
            md += &format!("\n## {title}\n\n![{file}]({file})\n");
        }
    }
    if !s.timings.is_empty() {
        md += "\n## Timings\n\n| step | seconds |\n|---|---|\n";
        for (k, v) in &s.timings {
            md += &format!("| {k} | {v:.1} |\n");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(1_796_301_296), "20261203-123456");
        assert_eq!(timestamp(951_782_400), "20000229-000000");
    }
}
