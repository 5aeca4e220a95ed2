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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamOutput>,
}

/// A CAM at the stage's own resolution, after ReLU, before any resizing or
/// normalisation (`map[row][col]`).
#[derive(Debug, Clone, Serialize)]
pub struct CamOutput {
    pub method: String,
    pub layer: String,
    pub target: usize,
    pub map: Vec<Vec<f32>>,
}

/// What `--cam` asks for.
#[derive(Debug, Clone)]
pub struct CamRequest {
    pub method: crate::cam::Method,
    pub layer: crate::model::Stage,
    /// `None` = the top prediction.
    pub target: Option<usize>,
    pub out_dir: Option<PathBuf>,
}

impl CamRequest {
    /// Check the `--cam*` flags together.
    pub fn parse(method: &str, layer: &str, target: &str, out_dir: Option<PathBuf>) -> Result<CamRequest, String> {
        let method = crate::cam::Method::from_name(method)
            .ok_or_else(|| format!("--cam {method:?}: expected gradcam, gradcam++, hirescam or eigencam"))?;
        let layer = match crate::model::Stage::from_name(layer) {
            Some(s) if !matches!(s, crate::model::Stage::Stem | crate::model::Stage::Head) => s,
            _ => {
                return Err(format!(
                    "--cam-layer {layer:?}: expected layer1, layer2, layer3 or layer4"
                ));
            }
        };
        let target = match target {
            "predicted" => None,
            "true" => return Err("--cam-target true: predict has no labels; use `predicted` or a class index".into()),
            n => Some(
                n.parse::<usize>()
                    .map_err(|_| format!("--cam-target {n:?}: expected `predicted` or a class index"))?,
            ),
        };
        Ok(CamRequest {
            method,
            layer,
            target,
            out_dir,
        })
    }
}

/// Classify `images` in batches. `classes` names the outputs (or indices are used).
pub fn predict(
    model: &ResNet,
    classes: Option<&[String]>,
    images: &[PathBuf],
    config: &Config,
    top_k: usize,
    cam: Option<&CamRequest>,
    device: &Device,
) -> Result<Vec<Prediction>, String> {
    let aug = Augmenter::new(&config.image, &config.augment);
    let mut out = Vec::new();
    for chunk in images.chunks(config.train.batch_size.max(1)) {
        let mut data = vec![0f32; chunk.len() * aug.image_len()];
        let mut crops = Vec::new();
        for (path, dst) in chunk.iter().zip(data.chunks_mut(aug.image_len())) {
            let rgb = decode_resized(path, config.image.resize).map_err(|e| format!("{}: {e}", path.display()))?;
            aug.test_into(&rgb, dst);
            crops.push(rgb);
        }
        let s = config.image.size as usize;
        let x = Tensor::from_vec(data, (chunk.len(), 3, s, s), device).map_err(|e| e.to_string())?;
        let logits = model.forward(&x).map_err(|e| e.to_string())?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1).map_err(|e| e.to_string())?;
        let logits: Vec<Vec<f32>> = logits.to_vec2().map_err(|e| e.to_string())?;
        let probs: Vec<Vec<f32>> = probs.to_vec2().map_err(|e| e.to_string())?;
        let cams = match cam {
            None => None,
            Some(req) => {
                let targets: Vec<usize> = match req.target {
                    Some(t) if t >= model.num_classes() => {
                        return Err(format!(
                            "--cam-target {t}: the model has {} classes",
                            model.num_classes()
                        ));
                    }
                    Some(t) => vec![t; chunk.len()],
                    None => crate::train::metrics::argmax_rows(&probs),
                };
                let raw = crate::cam::compute(model, &x, req.layer, &targets, req.method).map_err(|e| e.to_string())?;
                if let Some(dir) = &req.out_dir {
                    for ((path, rgb), m) in chunk.iter().zip(&crops).zip(&raw.maps) {
                        let crop = crate::workflow::display_crop_rgb(rgb, config.image.size);
                        let mut up = crate::cam::upsample(m, raw.height, raw.width, s, s);
                        crate::cam::normalise_by_max(&mut up);
                        let img = crate::cam::colormap::overlay(
                            &crop,
                            &up,
                            &crate::cam::colormap::Colormap::by_name(&config.cam.colormap),
                        );
                        let stem = path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "image".into());
                        let out = dir.join(format!("{stem}.{}.png", req.method.name().replace('+', "p")));
                        crate::report::write_png(&out, &img).map_err(|e| format!("{}: {e}", out.display()))?;
                    }
                }
                Some(
                    raw.maps
                        .iter()
                        .zip(&targets)
                        .map(|(m, t)| CamOutput {
                            method: req.method.name().to_string(),
                            layer: req.layer.name().to_string(),
                            target: *t,
                            map: m.chunks(raw.width).map(|r| r.to_vec()).collect(),
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        for (i, ((path, l), p)) in chunk.iter().zip(logits).zip(probs).enumerate() {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
            let top = order
                .into_iter()
                .take(top_k)
                .map(|i| Ranked {
                    index: i,
                    class: classes.and_then(|c| c.get(i).cloned()).unwrap_or_else(|| i.to_string()),
                    prob: p[i],
                })
                .collect();
            out.push(Prediction {
                image: path.clone(),
                top,
                logits: l,
                cam: cams.as_ref().map(|c| c[i].clone()),
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
