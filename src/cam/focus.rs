//! Is the model looking at the flower? With a segmentation mask, the focus
//! score is the share of CAM energy on flower pixels, and the pointing game
//! asks whether the CAM's maximum lands on the flower.

use serde::Serialize;

/// Focus of one CAM against one mask (both at the same size).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Focus {
    /// Share of the CAM's total mass on flower pixels, in [0, 1].
    pub energy: f64,
    /// Whether the CAM's maximum is on the flower.
    pub hit: bool,
}

/// `cam` ≥ 0 and `mask` (true = flower) cover the same pixels.
pub fn focus(cam: &[f32], mask: &[bool]) -> Focus {
    let total: f64 = cam.iter().map(|&v| v.max(0.0) as f64).sum();
    let on: f64 = cam
        .iter()
        .zip(mask)
        .filter(|(_, m)| **m)
        .map(|(&v, _)| v.max(0.0) as f64)
        .sum();
    let argmax = cam
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    Focus {
        energy: if total > 0.0 { on / total } else { 0.0 },
        hit: total > 0.0 && mask.get(argmax).copied().unwrap_or(false),
    }
}

/// Per-class summary of a model's focus.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ClassFocus {
    pub class: String,
    pub mean_energy: f64,
    pub pointing_hits: f64,
    pub images: usize,
    /// Mean energy below the threshold: the model may be using a shortcut.
    pub flagged: bool,
}

/// Average focus per class; classes with no scored image are left out.
pub fn by_class(classes: &[String], scored: &[(usize, Focus)], threshold: f64) -> Vec<ClassFocus> {
    classes
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let f: Vec<&Focus> = scored.iter().filter(|(c, _)| *c == i).map(|(_, f)| f).collect();
            if f.is_empty() {
                return None;
            }
            let n = f.len() as f64;
            let mean_energy = f.iter().map(|f| f.energy).sum::<f64>() / n;
            Some(ClassFocus {
                class: name.clone(),
                mean_energy,
                pointing_hits: f.iter().filter(|f| f.hit).count() as f64 / n,
                images: f.len(),
                flagged: mean_energy < threshold,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_share_and_pointing_game() {
        let cam = [0.0, 1.0, 3.0, 0.0];
        let f = focus(&cam, &[false, true, false, true]);
        assert!((f.energy - 0.25).abs() < 1e-12);
        assert!(!f.hit);
        let f = focus(&cam, &[false, false, true, false]);
        assert!((f.energy - 0.75).abs() < 1e-12 && f.hit);
        assert_eq!(
            focus(&[0.0; 4], &[true; 4]),
            Focus {
                energy: 0.0,
                hit: false
            }
        );
        let classes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let summary = by_class(
            &classes,
            &[
                (0, Focus { energy: 0.9, hit: true }),
                (
                    1,
                    Focus {
                        energy: 0.2,
                        hit: false,
                    },
                ),
                (1, Focus { energy: 0.4, hit: true }),
            ],
            0.5,
        );
        assert_eq!(summary.len(), 2);
        assert!(!summary[0].flagged && summary[1].flagged);
        assert!((summary[1].mean_energy - 0.3).abs() < 1e-12);
        assert_eq!(summary[1].pointing_hits, 0.5);
    }
}
