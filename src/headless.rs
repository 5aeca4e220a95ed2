//! Headless mode: the worker's events as plain lines (the notebook's epoch
//! lines, phase headers, the final comparison), no escape codes. Used when
//! stdout is not a terminal or with `--headless`.

use crate::train::{Event, Phase};

/// What the printer remembers between events.
#[derive(Debug, Default)]
pub struct Printer {
    last_progress_quarter: usize,
    final_acc: Vec<(Phase, f64)>,
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

impl Printer {
    /// The lines to print for `event` (often none).
    pub fn lines(&mut self, event: &Event) -> Vec<String> {
        match event {
            Event::RunStarted { run_dir, device, .. } => {
                vec![format!("run folder: {} (device: {device})", run_dir.display())]
            }
            Event::DatasetProgress { done, total } => {
                let quarter = done * 4 / (*total).max(1);
                if quarter > self.last_progress_quarter || done == total {
                    self.last_progress_quarter = quarter;
                    return vec![format!("decoding images: {done}/{total}")];
                }
                vec![]
            }
            Event::DatasetReady { root, table, skipped } => {
                let mut out = vec![
                    String::new(),
                    format!("== {} ==", Phase::Explore.title()),
                    format!("dataset: {}", root.display()),
                ];
                let width = table.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
                out.push(format!("{:<width$}  {:>5}  {:>5}", "class", "train", "test"));
                for r in table {
                    out.push(format!("{:<width$}  {:>5}  {:>5}", r.name, r.train, r.test));
                }
                let (tr, te) = table.iter().fold((0, 0), |a, r| (a.0 + r.train, a.1 + r.test));
                out.push(format!("{:<width$}  {:>5}  {:>5}", "total", tr, te));
                for (p, why) in skipped {
                    out.push(format!("skipped {}: {why}", p.display()));
                }
                out
            }
            Event::PhaseStarted {
                phase,
                epochs,
                batches,
                trainable,
            } => {
                let mut out = vec![String::new(), format!("== {} ==", phase.title())];
                if *epochs > 0 {
                    out.push(format!("trainable: {trainable}; {epochs} epochs of {batches} batches"));
                    out.push("=".repeat(70));
                }
                out
            }
            Event::Batch { .. } => vec![],
            Event::EpochDone { metrics: m, epochs, .. } => vec![format!(
                "Epoch {:2}/{epochs}  Train Loss: {:.4}  Train Acc: {}  Test Loss: {:.4}  Test Acc: {}  ({:.1} s, {:.0} img/s)",
                m.epoch,
                m.train_loss,
                pct(m.train_acc),
                m.test_loss,
                pct(m.test_acc),
                m.seconds,
                m.images_per_second
            )],
            Event::PhaseDone { phase, seconds } => {
                if matches!(phase, Phase::FeatureExtraction | Phase::FineTuning) {
                    vec!["=".repeat(70), format!("phase done in {seconds:.1} s")]
                } else {
                    vec![format!("done in {seconds:.1} s")]
                }
            }
            Event::Artifact { path, .. } => vec![format!("wrote {}", path.display())],
            Event::Finished { run_dir } | Event::Stopped { run_dir } => {
                let mut out = vec![String::new()];
                if let Event::Stopped { .. } = event {
                    out.push("stopped: the run keeps what finished".into());
                }
                out.extend(self.comparison());
                out.push(format!("results: {}", run_dir.display()));
                out
            }
            Event::Failed { message } => vec![format!("failed: {message}")],
        }
    }

    /// Remember final accuracies as epochs arrive (called for every event).
    pub fn observe(&mut self, event: &Event) {
        if let Event::EpochDone { phase, metrics, .. } = event {
            self.final_acc.retain(|(p, _)| p != phase);
            self.final_acc.push((*phase, metrics.test_acc));
        }
    }

    fn comparison(&self) -> Vec<String> {
        if self.final_acc.is_empty() {
            return vec![];
        }
        let mut out = vec![
            "=".repeat(50),
            "ACCURACY COMPARISON".into(),
            "=".repeat(50),
            format!("{:<25} {:<15}", "Approach", "Test Accuracy"),
            "-".repeat(40),
        ];
        for (p, acc) in &self.final_acc {
            let name = if *p == Phase::FeatureExtraction {
                "Feature Extraction"
            } else {
                "Fine-Tuning (layer4)"
            };
            out.push(format!("{name:<25} {:<15}", pct(*acc)));
        }
        if let [(_, fe), (_, ft)] = self.final_acc.as_slice() {
            out.push("-".repeat(40));
            let d = ft - fe;
            out.push(format!(
                "Difference: {} {}",
                pct(d.abs()),
                if d > 0.0 { "improvement" } else { "decrease" }
            ));
        }
        out.push("=".repeat(50));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::EpochMetrics;

    fn epoch(e: usize, acc: f64) -> EpochMetrics {
        EpochMetrics {
            epoch: e,
            train_loss: 1.0,
            train_acc: 0.5,
            test_loss: 0.9,
            test_acc: acc,
            seconds: 2.0,
            images_per_second: 80.0,
            per_class_acc: vec![],
            confusion: vec![],
        }
    }

    #[test]
    fn epoch_lines_follow_the_notebook_and_the_end_compares() {
        let mut p = Printer::default();
        let ev = Event::EpochDone {
            phase: Phase::FeatureExtraction,
            metrics: Box::new(epoch(3, 0.8125)),
            epochs: 15,
        };
        p.observe(&ev);
        let lines = p.lines(&ev);
        assert_eq!(
            lines,
            vec![
                "Epoch  3/15  Train Loss: 1.0000  Train Acc: 50.0%  Test Loss: 0.9000  Test Acc: 81.2%  (2.0 s, 80 img/s)"
            ]
        );
        p.observe(&Event::EpochDone {
            phase: Phase::FineTuning,
            metrics: Box::new(epoch(1, 0.9)),
            epochs: 15,
        });
        let end = p
            .lines(&Event::Finished {
                run_dir: "runs/x".into(),
            })
            .join("\n");
        assert!(end.contains("Feature Extraction        81.2%"), "{end}");
        assert!(end.contains("Difference: 8.8% improvement"), "{end}");
        assert!(!end.contains('\x1b'));
    }
}
