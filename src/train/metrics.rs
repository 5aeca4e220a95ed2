//! What an epoch measured: loss, accuracy, per-class accuracy, confusion.
//! Accumulated from logits on the host so CPU and GPU report identically.

use serde::{Deserialize, Serialize};

/// Running sums over the batches of one pass (train or test).
#[derive(Debug, Clone)]
pub struct Tally {
    pub loss_sum: f64,
    pub count: usize,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
}

impl Tally {
    pub fn new(classes: usize) -> Tally {
        Tally {
            loss_sum: 0.0,
            count: 0,
            confusion: vec![vec![0; classes]; classes],
        }
    }

    /// Add one batch: its mean loss, and each prediction against its label.
    pub fn add(&mut self, mean_loss: f64, predictions: &[usize], labels: &[usize]) {
        self.loss_sum += mean_loss * labels.len() as f64;
        self.count += labels.len();
        for (p, l) in predictions.iter().zip(labels) {
            self.confusion[*l][*p] += 1;
        }
    }

    pub fn loss(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.loss_sum / self.count as f64
        }
    }

    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.confusion.len()).map(|i| self.confusion[i][i]).sum();
        if self.count == 0 {
            0.0
        } else {
            correct as f64 / self.count as f64
        }
    }

    /// Accuracy per true class (0 for a class with no images).
    pub fn per_class(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: usize = row.iter().sum();
                if n == 0 { 0.0 } else { row[i] as f64 / n as f64 }
            })
            .collect()
    }
}

/// One epoch of one phase, as `metrics.jsonl` and `summary.json` hold it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub per_class_acc: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
}

/// Index of the largest value in each row.
pub fn argmax_rows(rows: &[Vec<f32>]) -> Vec<usize> {
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_loss_accuracy_and_confusion() {
        let mut t = Tally::new(3);
        t.add(1.0, &[0, 1, 2, 2], &[0, 1, 1, 2]);
        t.add(3.0, &[0, 0], &[0, 2]);
        assert!((t.loss() - 10.0 / 6.0).abs() < 1e-12);
        assert!((t.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(t.per_class(), vec![1.0, 0.5, 0.5]);
        assert_eq!(t.confusion[1], vec![0, 1, 1]);
        assert_eq!(argmax_rows(&[vec![0.1, 0.9, 0.3], vec![2.0, -1.0, 0.0]]), vec![1, 0]);
    }
}
