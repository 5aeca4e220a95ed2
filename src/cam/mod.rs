//! Where the model looks: Grad-CAM through Candle's autograd, colormaps and
//! overlays, and the focus score against segmentation masks.
//!
//! The stage output is tapped as a `Var` of its own and the class score is
//! differentiated with respect to it, so CAMs work the same whether or not
//! the stage was trainable (the notebook's hook-based version fails on a
//! frozen layer4).

pub mod colormap;
pub mod focus;

use candle_core::{D, Device, Tensor, Var};

use crate::model::{BnTrain, ResNet, Stage};

/// Raw CAMs at the stage's own resolution, after ReLU, before any resizing
/// or normalisation: `maps[i]` is `height × width`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCams {
    pub maps: Vec<Vec<f32>>,
    pub height: usize,
    pub width: usize,
}

/// Grad-CAM of `layer` for each image of the batch `x` and its target class.
pub fn gradcam(
    model: &ResNet,
    x: &Tensor,
    layer: Stage,
    targets: &[usize],
) -> candle_core::Result<RawCams> {
    if layer == Stage::Head {
        candle_core::bail!("Grad-CAM needs a convolutional stage, not {}", layer.name());
    }
    let acts = model
        .forward_range(x, Stage::Stem, layer, BnTrain::EVAL)?
        .detach();
    let tap = Var::from_tensor(&acts)?;
    let next = Stage::ALL[layer as usize + 1];
    let logits = model.forward_range(tap.as_tensor(), next, Stage::Head, BnTrain::EVAL)?;
    let (n, classes) = logits.dims2()?;
    if targets.len() != n || targets.iter().any(|t| *t >= classes) {
        candle_core::bail!(
            "Grad-CAM: {} targets for {n} images with {classes} classes",
            targets.len()
        );
    }
    let mut onehot = vec![0f32; n * classes];
    for (i, t) in targets.iter().enumerate() {
        onehot[i * classes + t] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, (n, classes), logits.device())?;
    // Images are independent, so the gradient of the summed scores holds each
    // image's own gradient.
    let score = (logits * onehot)?.sum_all()?;
    let grads = score.backward()?;
    let g = grads
        .get(tap.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the tapped stage".into()))?;
    let weights = g.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    let cam = acts.broadcast_mul(&weights)?.sum(1)?.relu()?;
    let (_, h, w) = cam.dims3()?;
    let maps = cam
        .to_device(&Device::Cpu)?
        .to_vec3::<f32>()?
        .into_iter()
        .map(|m| m.concat())
        .collect();
    Ok(RawCams {
        maps,
        height: h,
        width: w,
    })
}

/// Bilinear resize of a map, as PyTorch's `interpolate(align_corners=False)`.
pub fn upsample(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let src = |o: usize, out: usize, inp: usize| -> (usize, usize, f32) {
        let s = ((o as f32 + 0.5) * inp as f32 / out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        (i0, i1, s - i0 as f32)
    };
    let mut out = Vec::with_capacity(out_h * out_w);
    for oy in 0..out_h {
        let (y0, y1, fy) = src(oy, out_h, h);
        for ox in 0..out_w {
            let (x0, x1, fx) = src(ox, out_w, w);
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Divide by the maximum, as the notebook's `grad_cam` does (all-zero stays zero).
pub fn normalise_by_max(map: &mut [f32]) {
    let max = map.iter().cloned().fold(0f32, f32::max);
    if max > 0.0 {
        map.iter_mut().for_each(|v| *v /= max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsample_matches_pytorch_bilinear() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0.,1.],[2.,3.]]]]), size=(4,4), mode="bilinear", align_corners=False)
        let out = upsample(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
    }
}
