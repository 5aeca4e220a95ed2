//! `flowercam predict`: classify image files with the test-time transform
//! (resize 256, centre crop 224, normalise), printing top-K classes, or one
//! JSON object per image for scripts.

use std::path::PathBuf;

use candle_core::{D, Device, Tensor};
use serde::Serialize;

use crate::config::Config;
use crate::data::augment::Augmenter;
use crate::data::cache::decode_resized;
use crate::model::ResNet;

/// One class in a top-K list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub class: String,
    pub prob: f32,
}

/// What `predict` says about one image.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<Ranked>,
    pub logits: Vec<f32>,
}

/// Classify `images` in batches. `classes` names the outputs (or indices are used).
pub fn predict(
    model: &ResNet,
    classes: Option<&[String]>,
    images: &[PathBuf],
    config: &Config,
    top_k: usize,
    device: &Device,
) -> Result<Vec<Prediction>, String> {
    let aug = Augmenter::new(&config.image, &config.augment);
    let mut out = Vec::new();
    for chunk in images.chunks(config.train.batch_size.max(1)) {
        let mut data = vec![0f32; chunk.len() * aug.image_len()];
        for (path, dst) in chunk.iter().zip(data.chunks_mut(aug.image_len())) {
            let rgb = decode_resized(path, config.image.resize)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            aug.test_into(&rgb, dst);
        }
        let s = config.image.size as usize;
        let x =
            Tensor::from_vec(data, (chunk.len(), 3, s, s), device).map_err(|e| e.to_string())?;
        let logits = model.forward(&x).map_err(|e| e.to_string())?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1).map_err(|e| e.to_string())?;
        let logits: Vec<Vec<f32>> = logits.to_vec2().map_err(|e| e.to_string())?;
        let probs: Vec<Vec<f32>> = probs.to_vec2().map_err(|e| e.to_string())?;
        for ((path, l), p) in chunk.iter().zip(logits).zip(probs) {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
            let top = order
                .into_iter()
                .take(top_k)
                .map(|i| Ranked {
                    index: i,
                    class: classes
                        .and_then(|c| c.get(i).cloned())
                        .unwrap_or_else(|| i.to_string()),
                    prob: p[i],
                })
                .collect();
            out.push(Prediction {
                image: path.clone(),
                top,
                logits: l,
            });
        }
    }
    Ok(out)
}

/// The human-readable form: one line per image.
pub fn format_line(p: &Prediction) -> String {
    let tops: Vec<String> = p
        .top
        .iter()
        .map(|r| format!("{} {:.1}%", r.class, r.prob * 100.0))
        .collect();
    format!("{}: {}", p.image.display(), tops.join(", "))
}
