//! Train-mode BatchNorm (batch statistics), optionally followed by ReLU, as
//! one operation with its own backward.
//!
//! Built from Candle operations, train-mode BatchNorm is about fifteen
//! single-threaded passes over the activations forward and more backward
//! (means, centring, squares, broadcasts, and each one's gradient); when
//! layer4 fine-tunes, that cost as much as its convolutions. Here it is two
//! passes for the statistics, one to normalise, and two backward, each
//! spread over the thread pool. The gradient is the closed form of
//! differentiating through the batch mean and variance:
//! `dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂))`, `dγ = Σ dy · x̂`,
//! `dβ = Σ dy`, per channel, with `x̂ = (x − μ)/σ` and σ = √(var + ε).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::slice;

/// Per-channel batch statistics: mean and biased variance, as PyTorch
/// normalises with (the running update wants the unbiased one, which the
/// caller derives).
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    var: Vec<f32>,
}

/// `relu?(γ · (x − μ_batch) / √(var_batch + ε) + β)`; the statistics it used
/// are kept for the backward and for the running update.
struct BatchNormOp {
    eps: f64,
    relu: bool,
    /// Shared with the caller, which reads them for the running update.
    stats: Arc<OnceLock<Stats>>,
}

/// Mean and biased variance of every channel of NCHW `x`, two passes with
/// f64 sums (one pass of Σx² loses digits when the mean is large).
fn channel_stats(x: &[f32], n: usize, c: usize, plane: usize) -> Stats {
    let count = (n * plane).max(1) as f64;
    let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &x[(i * c + ch) * plane..][..plane]);
            let sum: f64 = planes().map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum();
            let mean = sum / count;
            let sq: f64 = planes()
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean as f32, (sq / count) as f32)
        })
        .unzip();
    Stats { mean, var }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "flowercam-batchnorm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "batchnorm input")?;
        let (gamma, beta) = (slice(s2, l2, "batchnorm weight")?, slice(s3, l3, "batchnorm bias")?);
        let (n, c, h, w) = l1.shape().dims4()?;
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!(
                "batchnorm of {c} channels with {} weights, {} biases",
                gamma.len(),
                beta.len()
            );
        }
        let plane = h * w;
        let stats = channel_stats(x, n, c, plane);
        let relu = self.relu;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane.max(1))
            .zip(x.par_chunks(plane.max(1)))
            .enumerate()
            .for_each(|(p, (y, x))| {
                let ch = p % c;
                let scale = gamma[ch] / (stats.var[ch] as f64 + self.eps).sqrt() as f32;
                let (mean, shift) = (stats.mean[ch], beta[ch]);
                // Centre first: with few values per channel the mean can
                // dwarf the spread, and `x·s − μ·s` would cancel away digits
                // that `(x − μ)·s` keeps.
                for (y, x) in y.iter_mut().zip(x) {
                    let v = (x - mean) * scale + shift;
                    *y = if relu { v.max(0.0) } else { v };
                }
            });
        // A graph node runs forward once; a second run would see the same
        // input, so the first statistics stay right.
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else {
            candle_core::bail!("batchnorm backward before its forward");
        };
        let (n, c, h, w) = x.dims4()?;
        let plane = (h * w).max(1);
        let count = (n * h * w).max(1) as f32;
        let gamma_v = gamma.to_vec1::<f32>()?;
        let inv_std: Vec<f32> = stats
            .var
            .iter()
            .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
            .collect();
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (Storage::Cpu(gs), Storage::Cpu(xs), Storage::Cpu(rs)) = (&*gs, &*xs, &*rs) else {
            candle_core::bail!("the fused batchnorm's backward runs on the CPU only");
        };
        let (dy, xv, yv) = (
            slice(gs, gl, "batchnorm gradient")?,
            slice(xs, xl, "batchnorm input")?,
            slice(rs, rl, "batchnorm output")?,
        );
        // Where ReLU cut the output, no gradient flows back.
        let relu = self.relu;
        let masked = |i: usize| if relu && yv[i] <= 0.0 { 0.0 } else { dy[i] };
        let (sum_dy, sum_dy_xhat): (Vec<f32>, Vec<f32>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut s, mut sx) = (0f64, 0f64);
                for i in 0..n {
                    let base = (i * c + ch) * plane;
                    for (j, &xj) in xv[base..base + plane].iter().enumerate() {
                        let g = masked(base + j) as f64;
                        s += g;
                        sx += g * (xj - stats.mean[ch]) as f64;
                    }
                }
                (s as f32, (sx * inv_std[ch] as f64) as f32)
            })
            .unzip();
        let dx = if x.track_op() {
            let mut dx = vec![0f32; xv.len()];
            dx.par_chunks_mut(plane).enumerate().for_each(|(p, out)| {
                let ch = p % c;
                let (mean, istd) = (stats.mean[ch], inv_std[ch]);
                let k = gamma_v[ch] * istd;
                let (mdy, mdyx) = (sum_dy[ch] / count, sum_dy_xhat[ch] / count);
                let base = p * plane;
                for (j, o) in out.iter_mut().enumerate() {
                    let xhat = (xv[base + j] - mean) * istd;
                    *o = k * (masked(base + j) - mdy - xhat * mdyx);
                }
            });
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dgamma = gamma
            .track_op()
            .then(|| Tensor::from_vec(sum_dy_xhat, c, x.device()))
            .transpose()?;
        let dbeta = beta
            .track_op()
            .then(|| Tensor::from_vec(sum_dy, c, x.device()))
            .transpose()?;
        Ok((dx, dgamma, dbeta))
    }
}

/// Train-mode BatchNorm of NCHW `x` (ReLU after it when `relu`): the output
/// and the batch's per-channel mean and biased variance, for the running
/// statistics. `None` where the fused operation does not apply (not an f32
/// CPU tensor); the caller then uses Candle's operations.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !super::fast_cpu(x) || gamma.dtype() != DType::F32 || beta.dtype() != DType::F32 {
        return Ok(None);
    }
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormOp {
        eps,
        relu,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(stats) = stats.get() else {
        candle_core::bail!("batchnorm statistics missing after its forward");
    };
    let c = stats.mean.len();
    let mean = Tensor::from_slice(&stats.mean, c, x.device())?;
    let var = Tensor::from_slice(&stats.var, c, x.device())?;
    Ok(Some((y, mean, var)))
}
