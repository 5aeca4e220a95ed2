//! The fast CPU path for the convolutions ResNet uses (7×7/2 stem, 3×3/1,
//! 3×3/2, 1×1/2 shortcut) and the glue around them.
//!
//! Candle's own CPU convolution builds one im2col matrix for the whole batch,
//! multiplies, then transposes the result into NCHW, and BatchNorm and ReLU
//! each make another pass over memory. Here each image (or, for the small
//! late layers, a handful of images) is one task: its columns fit in a
//! thread's scratch buffer, the GEMM writes NCHW directly, and bias and ReLU
//! are applied while the output is still in cache. 3×3 stride-1 convolutions
//! use Winograd F(2×2,3×3) ([`winograd`]). Frozen BatchNorms are folded into
//! the weights ([`fold_batchnorm`]); trained ones run fused ([`batchnorm`]). Threads: images are spread over rayon's
//! pool (so `--threads` / `RAYON_NUM_THREADS` size it) with a single-threaded
//! GEMM each; when there are fewer images than threads the GEMM itself runs
//! on the pool instead, never both.
//!
//! Off the CPU (CUDA) the same entry points call Candle's operations.

pub mod batchnorm;
pub mod gemm;
pub mod im2col;
pub mod winograd;

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

pub use batchnorm::batch_norm_train;

/// The shape of one convolution: a batch of `n` images `cin × h × w`, square
/// `k × k` filters to `cout` channels, symmetric zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Rows of the im2col matrix: one per (input channel, filter tap).
    pub fn kdim(&self) -> usize {
        self.cin * self.k * self.k
    }

    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    fn out_len(&self) -> usize {
        self.cout * self.ho() * self.wo()
    }

    /// Which algorithm computes this convolution.
    pub fn algorithm(&self) -> Algorithm {
        if self.k == 3 && self.stride == 1 && self.pad == 1 && self.ho() * self.wo() >= WINOGRAD_MIN_PIXELS {
            Algorithm::Winograd
        } else {
            Algorithm::Im2col
        }
    }

    fn validate(&self) -> Result<()> {
        if self.k == 0 || self.stride == 0 {
            candle_core::bail!("convolution with a zero kernel or stride");
        }
        if self.h + 2 * self.pad < self.k || self.w + 2 * self.pad < self.k {
            candle_core::bail!(
                "convolution input {}×{} is smaller than its {}×{} kernel (padding {})",
                self.h,
                self.w,
                self.k,
                self.k,
                self.pad
            );
        }
        Ok(())
    }
}

/// Below this many output pixels per image the Winograd tiles (which round
/// up to even sizes) and the filter transform cost more than they save. At
/// 224 px layer4's 7×7 maps still gain (measured: 38 ms against im2col's
/// 53 ms per batch of 32 for one 512→512 convolution); at 112 px (4×4) they
/// go to im2col.
const WINOGRAD_MIN_PIXELS: usize = 7 * 7;

/// How a convolution is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Per-image receptive fields times the weights.
    Im2col,
    /// Winograd F(2×2, 3×3).
    Winograd,
}

thread_local! {
    /// Per-thread working memory (im2col columns, Winograd tiles): a few MB
    /// that would otherwise be fresh pages, zeroed by the kernel, per image.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Run `task(inputs, outputs, gemm_threads)` over consecutive groups of
/// `per` images: groups in parallel with single-threaded GEMMs when there are
/// enough of them, else one after another with a parallel GEMM.
fn over_images(
    x: &[f32],
    in_len: usize,
    y: &mut [f32],
    out_len: usize,
    per: usize,
    task: impl Fn(&[f32], &mut [f32], usize) + Sync,
) {
    let threads = threads();
    let groups = (x.len() / in_len.max(1)).div_ceil(per);
    if threads > 1 && groups >= threads {
        y.par_chunks_mut(per * out_len)
            .zip(x.par_chunks(per * in_len))
            .for_each(|(yc, xc)| task(xc, yc, 1));
    } else {
        for (yc, xc) in y.chunks_mut(per * out_len).zip(x.chunks(per * in_len)) {
            task(xc, yc, threads);
        }
    }
}

/// Add the per-channel bias and apply ReLU over NCHW outputs.
fn epilogue(y: &mut [f32], bias: &[f32], plane: usize, relu: bool) {
    for (c, chunk) in y.chunks_mut(plane).enumerate() {
        let b = bias[c % bias.len()];
        if relu {
            chunk.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        } else if b != 0.0 {
            chunk.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// `relu?(conv(x, w) + bias)` for NCHW `x` and `cout × cin × k × k` weights.
pub fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let plane = g.ho() * g.wo();
    let mut y = vec![0f32; g.n * out_len];
    match g.algorithm() {
        Algorithm::Winograd => {
            let u = winograd::transform_filters(w, g.cout, g.cin);
            let per = winograd::images_per_chunk(g, threads());
            over_images(x, in_len, &mut y, out_len, per, |xc, yc, t| {
                with_scratch(|s| winograd::forward_chunk(g, xc, xc.len() / in_len, &u, yc, t, s));
                epilogue(yc, bias, plane, relu);
            });
        }
        Algorithm::Im2col => {
            over_images(x, in_len, &mut y, out_len, 1, |xc, yc, t| {
                with_scratch(|s| im2col::forward_image(g, xc, w, yc, t, s));
                epilogue(yc, bias, plane, relu);
            });
        }
    }
    y
}

/// The input gradient of the convolution, given the output gradient `dy`.
/// Stride 1: a convolution of `dy` with the flipped, transposed filters (so
/// it takes the Winograd path too); otherwise per-image `Wᵀ·dy` + col2im.
pub fn backward_data(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    if g.stride == 1 && g.pad < g.k {
        let mut flipped = vec![0f32; w.len()];
        let taps = g.k * g.k;
        for co in 0..g.cout {
            for ci in 0..g.cin {
                let src = &w[(co * g.cin + ci) * taps..][..taps];
                let dst = &mut flipped[(ci * g.cout + co) * taps..][..taps];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        }
        let gt = Geometry {
            n: g.n,
            cin: g.cout,
            h: g.ho(),
            w: g.wo(),
            cout: g.cin,
            k: g.k,
            stride: 1,
            pad: g.k - 1 - g.pad,
        };
        debug_assert_eq!((gt.ho(), gt.wo()), (g.h, g.w));
        return forward(&gt, dy, &flipped, &[0.0], false);
    }
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let mut dx = vec![0f32; g.n * in_len];
    // Images of dy in, images of dx out: the roles of `over_images` swap.
    over_images(dy, out_len, &mut dx, in_len, 1, |dyc, dxc, t| {
        with_scratch(|s| im2col::backward_data_image(g, dyc, w, dxc, t, s));
    });
    dx
}

/// The weight gradient `Σ_images dy · colᵀ`: each thread sums its share of
/// the images, then the shares are added.
pub fn backward_filter(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let wlen = g.cout * g.kdim();
    let threads = threads();
    let share = |range: std::ops::Range<usize>, t: usize| {
        let mut dw = vec![0f32; wlen];
        with_scratch(|s| {
            for i in range {
                im2col::backward_filter_image(
                    g,
                    &x[i * in_len..][..in_len],
                    &dy[i * out_len..][..out_len],
                    &mut dw,
                    t,
                    s,
                );
            }
        });
        dw
    };
    if threads > 1 && g.n >= threads {
        let per = g.n.div_ceil(threads);
        (0..g.n.div_ceil(per))
            .into_par_iter()
            .map(|p| share(p * per..((p + 1) * per).min(g.n), 1))
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            })
            .unwrap_or_else(|| vec![0f32; wlen])
    } else {
        share(0..g.n, threads)
    }
}

/// The contiguous f32 data of a CPU tensor argument.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: the fast convolution needs a contiguous tensor"),
    }
}

fn geometry(x: &Layout, w: &Layout, stride: usize, pad: usize) -> Result<Geometry> {
    let (n, cin, h, width) = x.shape().dims4()?;
    let (cout, wcin, kh, kw) = w.shape().dims4()?;
    if wcin != cin || kh != kw {
        candle_core::bail!(
            "convolution of {:?} input with {:?} weights: channels or kernel shape do not fit",
            x.shape(),
            w.shape()
        );
    }
    let g = Geometry {
        n,
        cin,
        h,
        w: width,
        cout,
        k: kh,
        stride,
        pad,
    };
    g.validate()?;
    Ok(g)
}

/// `relu?(conv2d(x, w) + b)` as one Candle operation with its own backward.
struct ConvOp {
    stride: usize,
    pad: usize,
    relu: bool,
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "flowercam-conv2d"
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
        let g = geometry(l1, l2, self.stride, self.pad)?;
        let bias = slice(s3, l3, "conv bias")?;
        if bias.len() != g.cout {
            candle_core::bail!("conv bias has {} values for {} channels", bias.len(), g.cout);
        }
        let y = forward(
            &g,
            slice(s1, l1, "conv input")?,
            slice(s2, l2, "conv weight")?,
            bias,
            self.relu,
        );
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.cout, g.ho(), g.wo()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = if self.relu {
            (grad * res.gt(0f32)?.to_dtype(DType::F32)?)?
        } else {
            grad.contiguous()?
        };
        let (_, _, h, width) = x.dims4()?;
        // The first trainable stage's input is a constant: its gradient,
        // which Candle would compute anyway, is skipped.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &DataGradOp {
                    stride: self.stride,
                    pad: self.pad,
                    h,
                    w: width,
                },
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(
                &grad,
                &FilterGradOp {
                    stride: self.stride,
                    pad: self.pad,
                    k: w.dim(2)?,
                },
            )?)
        } else {
            None
        };
        let db = if b.track_op() { Some(grad.sum((0, 2, 3))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// (output gradient, weights) → input gradient.
struct DataGradOp {
    stride: usize,
    pad: usize,
    h: usize,
    w: usize,
}

impl CustomOp2 for DataGradOp {
    fn name(&self) -> &'static str {
        "flowercam-conv2d-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, _, _, _) = l1.shape().dims4()?;
        let (cout, cin, k, _) = l2.shape().dims4()?;
        let g = Geometry {
            n,
            cin,
            h: self.h,
            w: self.w,
            cout,
            k,
            stride: self.stride,
            pad: self.pad,
        };
        g.validate()?;
        let dx = backward_data(&g, slice(s1, l1, "output gradient")?, slice(s2, l2, "conv weight")?);
        Ok((CpuStorage::F32(dx), Shape::from((n, cin, self.h, self.w))))
    }
}

/// (input, output gradient) → weight gradient.
struct FilterGradOp {
    stride: usize,
    pad: usize,
    k: usize,
}

impl CustomOp2 for FilterGradOp {
    fn name(&self) -> &'static str {
        "flowercam-conv2d-grad-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, cin, h, w) = l1.shape().dims4()?;
        let (_, cout, _, _) = l2.shape().dims4()?;
        let g = Geometry {
            n,
            cin,
            h,
            w,
            cout,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
        };
        g.validate()?;
        let dw = backward_filter(&g, slice(s1, l1, "conv input")?, slice(s2, l2, "output gradient")?);
        Ok((CpuStorage::F32(dw), Shape::from((cout, cin, self.k, self.k))))
    }
}

/// `relu(a + b)`, the end of every residual block, in one pass.
struct AddReluOp;

impl CustomOp2 for AddReluOp {
    fn name(&self) -> &'static str {
        "flowercam-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (slice(s1, l1, "residual")?, slice(s2, l2, "shortcut")?);
        if l1.shape() != l2.shape() {
            candle_core::bail!("residual {:?} and shortcut {:?} differ", l1.shape(), l2.shape());
        }
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(1 << 16)
            .zip(a.par_chunks(1 << 16).zip(b.par_chunks(1 << 16)))
            .for_each(|(y, (a, b))| {
                for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
                    *y = (a + b).max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = (grad * res.gt(0f32)?.to_dtype(DType::F32)?)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

/// The stem's 3×3 stride-2 max pool with padding 1 (padding never wins).
struct MaxPoolOp;

impl CustomOp1 for MaxPoolOp {
    fn name(&self) -> &'static str {
        "flowercam-max-pool-3x3-s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "max-pool input")?;
        let (n, c, h, w) = l.shape().dims4()?;
        if h == 0 || w == 0 {
            candle_core::bail!("max pool of an empty {h}×{w} image");
        }
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let mut y = vec![0f32; n * c * ho * wo];
        y.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for oy in 0..ho {
                    let rows = (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h);
                    for ox in 0..wo {
                        let cols = (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w);
                        let mut m = f32::NEG_INFINITY;
                        for iy in rows.clone() {
                            for v in &plane[iy * w + cols.start..iy * w + cols.end] {
                                m = m.max(*v);
                            }
                        }
                        out[oy * wo + ox] = m;
                    }
                }
            });
        Ok((CpuStorage::F32(y), Shape::from((n, c, ho, wo))))
    }
}

fn fast_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// `relu?(conv2d(x, w) + bias)`, bias-free when `bias` is None.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, stride: usize, pad: usize, relu: bool) -> Result<Tensor> {
    if fast_cpu(x) {
        let zeros;
        let b = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(w.dim(0)?, DType::F32, x.device())?;
                &zeros
            }
        };
        return x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, ConvOp { stride, pad, relu });
    }
    let mut y = x.conv2d(w, pad, stride, 1, 1)?;
    if let Some(b) = bias {
        y = y.broadcast_add(&b.reshape((1, (), 1, 1))?)?;
    }
    if relu { y.relu() } else { Ok(y) }
}

/// `relu(a + b)`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast_cpu(a) && a.shape() == b.shape() {
        return a.contiguous()?.apply_op2(&b.contiguous()?, AddReluOp);
    }
    (a + b)?.relu()
}

/// MaxPool2d(3, stride 2, padding 1) on ReLU outputs (the stem's).
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    // The fast op has no backward; the stem is never trained.
    if fast_cpu(x) && !x.track_op() {
        return x.contiguous()?.apply_op1_no_bwd(&MaxPoolOp);
    }
    padded_max_pool_3x3_s2(x)
}

/// The same pool from Candle's operations (the stock path, GPUs, and
/// gradients). Inputs are ReLU outputs (≥ 0), so zero padding gives exactly
/// PyTorch's -inf padding.
pub fn padded_max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    x.pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 2)
}

/// Eval-mode BatchNorm folded into the preceding bias-free convolution:
/// `w·s` and `β − μ·s` with `s = γ / √(σ² + ε)` per output channel. Built
/// from Candle operations, so gradients still reach `w`, `γ` and `β` when
/// they are trainable.
pub fn fold_batchnorm(
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let (scale, shift) = batchnorm_affine(gamma, beta, mean, var, eps)?;
    let w = w.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
    Ok((w, shift))
}

/// Eval-mode BatchNorm as a per-channel affine map `x·s + t`, with
/// `s = γ / √(σ² + ε)` and `t = β − μ·s`: what folding multiplies into the
/// weights, and what the stock path applies after its convolution.
pub fn batchnorm_affine(
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let scale = (gamma / (var + eps)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    Ok((scale, shift))
}
