//! Where the model looks: Grad-CAM through Candle's autograd, colormaps and
//! overlays, and the focus score against segmentation masks.
//!
//! The stage output is tapped as a `Var` of its own and the class score is
//! differentiated with respect to it, so CAMs work the same whether or not
//! the stage was trainable (the notebook's hook-based version fails on a
//! frozen layer4).

pub mod colormap;
pub mod focus;
pub mod views;

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

/// The CAM methods flowercam computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Gradients averaged over space weight the activation channels.
    GradCam,
    /// Grad-CAM++: second- and third-order gradient terms weight each position.
    GradCamPlusPlus,
    /// HiResCAM: gradient times activation, position by position.
    HiResCam,
    /// EigenCAM: first principal component of the activations (no gradients).
    EigenCam,
}

impl Method {
    /// All methods, in the order the TUI cycles through them.
    pub const ALL: [Method; 4] = [
        Method::GradCam,
        Method::GradCamPlusPlus,
        Method::HiResCam,
        Method::EigenCam,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
            Method::HiResCam => "hirescam",
            Method::EigenCam => "eigencam",
        }
    }

    /// The name a person reads.
    pub fn title(self) -> &'static str {
        match self {
            Method::GradCam => "Grad-CAM",
            Method::GradCamPlusPlus => "Grad-CAM++",
            Method::HiResCam => "HiResCAM",
            Method::EigenCam => "EigenCAM",
        }
    }

    /// The next method in [`Method::ALL`], wrapping around.
    pub fn next(self) -> Method {
        let i = Method::ALL.iter().position(|&m| m == self).unwrap_or(0);
        Method::ALL[(i + 1) % Method::ALL.len()]
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Grad-CAM of `layer` for each image of the batch `x` and its target class.
pub fn gradcam(model: &ResNet, x: &Tensor, layer: Stage, targets: &[usize]) -> candle_core::Result<RawCams> {
    compute(model, x, layer, targets, Method::GradCam)
}

/// The stage's activations and the gradient of each image's target logit
/// with respect to them (raw logits, as pytorch-grad-cam's targets).
fn activations_and_gradients(
    model: &ResNet,
    x: &Tensor,
    layer: Stage,
    targets: &[usize],
) -> candle_core::Result<(Tensor, Tensor)> {
    if layer == Stage::Head {
        candle_core::bail!("a CAM needs a convolutional stage, not {}", layer.name());
    }
    let acts = model.forward_range(x, Stage::Stem, layer, BnTrain::EVAL)?.detach();
    let tap = Var::from_tensor(&acts)?;
    let next = Stage::ALL[layer as usize + 1];
    let logits = model.forward_range(tap.as_tensor(), next, Stage::Head, BnTrain::EVAL)?;
    let (n, classes) = logits.dims2()?;
    if targets.len() != n || targets.iter().any(|t| *t >= classes) {
        candle_core::bail!("CAM: {} targets for {n} images with {classes} classes", targets.len());
    }
    let mut onehot = vec![0f32; n * classes];
    for (i, t) in targets.iter().enumerate() {
        onehot[i * classes + t] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, (n, classes), logits.device())?;
    // Images are independent (eval-mode BatchNorm), so the gradient of the
    // summed scores holds each image's own gradient.
    let score = (logits * onehot)?.sum_all()?;
    let grads = score.backward()?;
    let g = grads
        .get(tap.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("no gradient reached the tapped stage".into()))?
        .clone();
    Ok((acts, g))
}

/// A CAM of `layer` for each image of `x` and its target class.
pub fn compute(
    model: &ResNet,
    x: &Tensor,
    layer: Stage,
    targets: &[usize],
    method: Method,
) -> candle_core::Result<RawCams> {
    let sum_space = |t: &Tensor| t.sum_keepdim(D::Minus1)?.sum_keepdim(D::Minus2);
    let cam = match method {
        Method::EigenCam => {
            let acts = model.forward_range(x, Stage::Stem, layer, BnTrain::EVAL)?;
            return eigen_cams(&acts);
        }
        Method::GradCam => {
            let (a, g) = activations_and_gradients(model, x, layer, targets)?;
            let w = g.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
            a.broadcast_mul(&w)?.sum(1)?
        }
        Method::HiResCam => {
            let (a, g) = activations_and_gradients(model, x, layer, targets)?;
            (a * g)?.sum(1)?
        }
        Method::GradCamPlusPlus => {
            let (a, g) = activations_and_gradients(model, x, layer, targets)?;
            let g2 = g.sqr()?;
            let g3 = (&g2 * &g)?;
            let denom = ((&g2 * 2.0)? + sum_space(&a)?.broadcast_mul(&g3)?)? + 1e-6;
            let aij = (&g2 / denom?)?;
            // Zero where the gradient is exactly zero, as the reference does.
            let nonzero = g.ne(0f32)?.to_dtype(aij.dtype())?;
            let w = sum_space(&(g.relu()? * (aij * nonzero)?)?)?;
            a.broadcast_mul(&w)?.sum(1)?
        }
    };
    let cam = cam.relu()?;
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

/// EigenCAM: project each image's centred activations (positions × channels)
/// onto their first right singular vector. The direction's sign is arbitrary
/// in any SVD; we pick the one that agrees with where activations are strong,
/// so the highlighted region is the active one.
fn eigen_cams(acts: &Tensor) -> candle_core::Result<RawCams> {
    let (_, c, h, w) = acts.dims4()?;
    let all = acts.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
    let maps = all
        .iter()
        .map(|flat| {
            let p = h * w;
            // flat is channel-major: flat[ch * p + pos].
            let mut m = nalgebra::DMatrix::<f64>::from_fn(p, c, |pos, ch| flat[ch * p + pos] as f64);
            let strength: Vec<f64> = (0..p).map(|pos| m.row(pos).sum()).collect();
            for ch in 0..c {
                let mean = m.column(ch).mean();
                m.column_mut(ch).add_scalar_mut(-mean);
            }
            let svd = m.clone().svd(false, true);
            let vt = svd.v_t.expect("asked for V^T");
            let (best, _) = svd
                .singular_values
                .iter()
                .enumerate()
                .fold((0, f64::MIN), |b, (i, s)| if *s > b.1 { (i, *s) } else { b });
            let mut proj: Vec<f64> = (0..p)
                .map(|pos| m.row(pos).iter().zip(vt.row(best).iter()).map(|(a, b)| a * b).sum())
                .collect();
            let mean_strength = strength.iter().sum::<f64>() / p as f64;
            let agreement: f64 = proj.iter().zip(&strength).map(|(a, s)| a * (s - mean_strength)).sum();
            if agreement < 0.0 {
                proj.iter_mut().for_each(|v| *v = -*v);
            }
            proj.into_iter().map(|v| v.max(0.0) as f32).collect()
        })
        .collect();
    Ok(RawCams {
        maps,
        height: h,
        width: w,
    })
}

/// pytorch-grad-cam's normalisation: `(x - min) / (max - min + 1e-7)`.
pub fn normalise_min_max(map: &mut [f32]) {
    let min = map.iter().cloned().fold(f32::INFINITY, f32::min);
    let shifted_max = map.iter().map(|v| v - min).fold(0f32, f32::max);
    map.iter_mut().for_each(|v| *v = (*v - min) / (1e-7 + shifted_max));
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
