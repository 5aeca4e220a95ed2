//! Convolution as matrix products over one image at a time: the image's
//! receptive fields are laid out as columns ("im2col", a few MB, reused per
//! thread) and one GEMM with the weights gives the image's whole output in
//! NCHW order, so no transpose follows. Also the two gradients, which are
//! the same products transposed.

use std::ops::Range;

use super::Geometry;
use super::gemm::{View, matmul};

/// Output columns `ox` whose input column `ox * stride + kx - pad` lies in
/// `0..w`, as a half-open range.
fn valid_columns(kx: usize, pad: usize, stride: usize, w: usize, wo: usize) -> (usize, usize) {
    let lo = if pad > kx { (pad - kx).div_ceil(stride) } else { 0 };
    let hi = if w + pad > kx {
        ((w - 1 + pad - kx) / stride + 1).min(wo)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Calls `f(row, ci, oy, iy, x0, x1)` for every im2col row segment of the
/// output rows `rows`: `row` indexes (ci, ky, kx), `iy` is the input row or
/// None in the padding, and output columns `x0..x1` read real input.
fn for_each_segment(
    g: &Geometry,
    rows: Range<usize>,
    mut f: impl FnMut(usize, usize, usize, Option<usize>, usize, usize),
) {
    let wo = g.wo();
    for ci in 0..g.cin {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = (ci * g.k + ky) * g.k + kx;
                let (x0, x1) = valid_columns(kx, g.pad, g.stride, g.w, wo);
                for oy in rows.clone() {
                    let iy = (oy * g.stride + ky).checked_sub(g.pad).filter(|&iy| iy < g.h);
                    f(row, ci, oy, iy, x0, x1);
                }
            }
        }
    }
}

/// Fill `col` (`kdim × ho·wo`) with the receptive fields of one image `x`
/// (`cin × h × w`); padding reads as zero.
pub fn im2col(g: &Geometry, x: &[f32], col: &mut [f32]) {
    im2col_rows(g, x, 0..g.ho(), col);
}

/// [`im2col`] for the output rows `rows` only: `col` is `kdim × rows·wo`.
fn im2col_rows(g: &Geometry, x: &[f32], rows: Range<usize>, col: &mut [f32]) {
    let wo = g.wo();
    let (first, width) = (rows.start, rows.len() * wo);
    let (s, pad) = (g.stride, g.pad);
    for_each_segment(g, rows, |row, ci, oy, iy, x0, x1| {
        let out = &mut col[row * width + (oy - first) * wo..][..wo];
        let Some(iy) = iy else {
            out.fill(0.0);
            return;
        };
        let kx = row % g.k;
        let src = &x[(ci * g.h + iy) * g.w..][..g.w];
        out[..x0].fill(0.0);
        out[x1..].fill(0.0);
        if s == 1 {
            let ix0 = x0 + kx - pad;
            out[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
        } else {
            for (ox, o) in out.iter_mut().enumerate().take(x1).skip(x0) {
                *o = src[ox * s + kx - pad];
            }
        }
    });
}

/// The adjoint of [`im2col`]: add every column entry back onto the input
/// pixel it was read from. `dx` is overwritten.
pub fn col2im(g: &Geometry, col: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    let (wo, hw) = (g.wo(), g.ho() * g.wo());
    let (s, pad) = (g.stride, g.pad);
    for_each_segment(g, 0..g.ho(), |row, ci, oy, iy, x0, x1| {
        let Some(iy) = iy else { return };
        let kx = row % g.k;
        let src = &col[row * hw + oy * wo..][..wo];
        let dst = &mut dx[(ci * g.h + iy) * g.w..][..g.w];
        for (ox, v) in src.iter().enumerate().take(x1).skip(x0) {
            dst[ox * s + kx - pad] += v;
        }
    });
}

/// Whether the image itself already is its im2col matrix (1×1, stride 1).
fn is_pointwise(g: &Geometry) -> bool {
    g.k == 1 && g.stride == 1 && g.pad == 0
}

/// The im2col matrix of one image: the image itself for 1×1 stride-1
/// convolutions, else filled into `scratch`.
fn columns<'a>(g: &Geometry, x: &'a [f32], scratch: &'a mut Vec<f32>) -> &'a [f32] {
    if is_pointwise(g) {
        return x;
    }
    scratch.resize(g.kdim() * g.ho() * g.wo(), 0.0);
    im2col(g, x, scratch);
    scratch
}

/// How much of the im2col matrix the forward builds at a time: about half
/// a core's L2, so the GEMM reads the columns from cache right after they
/// were written (the stem's whole matrix, 147 × 12544, is 7 MB).
const BAND_BYTES: usize = 512 << 10;

/// One image's output (`cout × ho·wo`, no bias) from weights `w` (`cout × kdim`),
/// in bands of output rows whose columns fit in cache.
pub fn forward_image(g: &Geometry, x: &[f32], w: &[f32], y: &mut [f32], threads: usize, scratch: &mut Vec<f32>) {
    let (ho, wo, kdim) = (g.ho(), g.wo(), g.kdim());
    let hw = ho * wo;
    let lhs = View::rows(w, kdim);
    if is_pointwise(g) {
        matmul(g.cout, hw, kdim, y, hw, lhs, View::rows(x, hw), false, threads);
        return;
    }
    let band = (BAND_BYTES / (4 * kdim * wo)).clamp(1, ho);
    scratch.resize(kdim * band * wo, 0.0);
    for first in (0..ho).step_by(band) {
        let rows = first..(first + band).min(ho);
        let width = rows.len() * wo;
        im2col_rows(g, x, rows, &mut scratch[..kdim * width]);
        let cols = View::rows(&scratch[..kdim * width], width);
        matmul(g.cout, width, kdim, &mut y[first * wo..], hw, lhs, cols, false, threads);
    }
}

/// One image's input gradient (`cin × h × w`) from its output gradient `dy`:
/// `Wᵀ · dy` gives the column gradient, which [`col2im`] folds back.
pub fn backward_data_image(
    g: &Geometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    threads: usize,
    scratch: &mut Vec<f32>,
) {
    let hw = g.ho() * g.wo();
    let kdim = g.kdim();
    let wt = View::transposed(w, kdim);
    if is_pointwise(g) {
        matmul(kdim, hw, g.cout, dx, hw, wt, View::rows(dy, hw), false, threads);
        return;
    }
    scratch.resize(kdim * hw, 0.0);
    matmul(kdim, hw, g.cout, scratch, hw, wt, View::rows(dy, hw), false, threads);
    col2im(g, scratch, dx);
}

/// Add one image's weight gradient `dy · colᵀ` (`cout × kdim`) onto `dw`.
pub fn backward_filter_image(
    g: &Geometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    threads: usize,
    scratch: &mut Vec<f32>,
) {
    let hw = g.ho() * g.wo();
    let col = columns(g, x, scratch);
    matmul(
        g.cout,
        g.kdim(),
        hw,
        dw,
        g.kdim(),
        View::rows(dy, hw),
        View::transposed(col, hw),
        true,
        threads,
    );
}
