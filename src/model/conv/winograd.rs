//! Winograd F(2×2, 3×3) for the 3×3 stride-1 convolutions, which carry about
//! 80 % of ResNet-18's multiply-adds: each 2×2 output tile costs 16
//! multiplications per channel pair instead of 36 (2.25× fewer), paid for
//! with cheap additions before and after. The 16 products per tile become 16
//! GEMMs (`cout × cin` by `cin × tiles`), so the heavy lifting stays in the
//! same kernel as the plain path.
//!
//! With `B`, `G`, `A` the F(2,3) matrices (Lavin & Gray 2015), a 4×4 input
//! tile `d` and 3×3 filter `g` give the 2×2 output `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A`.
//! The transforms only add and halve, so the result differs from a direct
//! convolution by float rounding alone (about 1e-6 relative here).

use super::Geometry;
use super::gemm::{View, matmul};

/// Output tiles down and across.
fn tiles(g: &Geometry) -> (usize, usize) {
    (g.ho().div_ceil(2), g.wo().div_ceil(2))
}

/// Images per GEMM: enough tiles (≥ 256 columns) to keep the kernel busy on
/// the small late layers, but at least one chunk per thread.
pub fn images_per_chunk(g: &Geometry, threads: usize) -> usize {
    let (ty, tx) = tiles(g);
    256usize.div_ceil(ty * tx).clamp(1, g.n.div_ceil(threads.max(1)).max(1))
}

/// The 16 transformed filters `G g Gᵀ`, laid out `[16][cout][cin]` so each
/// is a GEMM left operand.
pub fn transform_filters(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let plane = cout * cin;
    let mut u = vec![0f32; 16 * plane];
    for oc in 0..cout {
        for ic in 0..cin {
            let g = &w[(oc * cin + ic) * 9..][..9];
            // G applied down the columns: 4×3.
            let mut t = [[0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                t[0][c] = g0;
                t[1][c] = 0.5 * (g0 + g1 + g2);
                t[2][c] = 0.5 * (g0 - g1 + g2);
                t[3][c] = g2;
            }
            for (r, [a, b, c]) in t.into_iter().enumerate() {
                let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (j, v) in row.into_iter().enumerate() {
                    u[(r * 4 + j) * plane + oc * cin + ic] = v;
                }
            }
        }
    }
    u
}

/// `Bᵀ` on four values: the 1-D input transform.
#[inline(always)]
fn bt(d0: f32, d1: f32, d2: f32, d3: f32) -> [f32; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// `Bᵀ d B` of every tile of `nimg` images into `v` (`[16][cin][tc]`, column
/// `i·tiles + tile`). Works a tile row at a time so the loops run over
/// contiguous memory.
fn transform_input(g: &Geometry, x: &[f32], nimg: usize, v: &mut [f32], work: &mut [f32]) {
    let (ty, tx) = tiles(g);
    let (t, tc) = (ty * tx, nimg * ty * tx);
    // Padded row: input columns -1 ..= 2·tx, zero outside the image.
    let pw = 2 * tx + 2;
    let (rows, rest) = work.split_at_mut(8 * pw);
    let (d, cols) = rows.split_at_mut(4 * pw);
    let out = &mut rest[..4 * tx];
    for i in 0..nimg {
        for ci in 0..g.cin {
            let plane = &x[(i * g.cin + ci) * g.h * g.w..][..g.h * g.w];
            for a in 0..ty {
                for r in 0..4 {
                    let dst = &mut d[r * pw..(r + 1) * pw];
                    match (2 * a + r).checked_sub(1).filter(|&iy| iy < g.h) {
                        Some(iy) => {
                            dst[0] = 0.0;
                            dst[1..1 + g.w].copy_from_slice(&plane[iy * g.w..][..g.w]);
                            dst[1 + g.w..].fill(0.0);
                        }
                        None => dst.fill(0.0),
                    }
                }
                // Bᵀ down the columns, all columns at once.
                let (d0, rest) = d.split_at(pw);
                let (d1, rest) = rest.split_at(pw);
                let (d2, d3) = rest.split_at(pw);
                let (c0, rest) = cols.split_at_mut(pw);
                let (c1, rest) = rest.split_at_mut(pw);
                let (c2, c3) = rest.split_at_mut(pw);
                for c in 0..pw {
                    [c0[c], c1[c], c2[c], c3[c]] = bt(d0[c], d1[c], d2[c], d3[c]);
                }
                // B along the rows, one 4-wide window per tile.
                let base = i * t + a * tx;
                for r in 0..4 {
                    let row = &cols[r * pw..(r + 1) * pw];
                    let (o0, rest) = out.split_at_mut(tx);
                    let (o1, rest) = rest.split_at_mut(tx);
                    let (o2, o3) = rest.split_at_mut(tx);
                    for (b, win) in row.windows(4).step_by(2).take(tx).enumerate() {
                        [o0[b], o1[b], o2[b], o3[b]] = bt(win[0], win[1], win[2], win[3]);
                    }
                    for (j, o) in [&*o0, &*o1, &*o2, &*o3].into_iter().enumerate() {
                        v[((r * 4 + j) * g.cin + ci) * tc + base..][..tx].copy_from_slice(o);
                    }
                }
            }
        }
    }
}

/// `Aᵀ m A` of every tile of `m` (`[16][cout][tc]`) into the NCHW outputs `y`.
fn transform_output(g: &Geometry, m: &[f32], nimg: usize, y: &mut [f32], work: &mut [f32]) {
    let (ty, tx) = tiles(g);
    let (t, tc) = (ty * tx, nimg * ty * tx);
    let (ho, wo) = (g.ho(), g.wo());
    let (s, u) = work[..8 * tx].split_at_mut(4 * tx);
    for i in 0..nimg {
        for co in 0..g.cout {
            let plane = &mut y[(i * g.cout + co) * ho * wo..][..ho * wo];
            for a in 0..ty {
                let base = i * t + a * tx;
                let row = |xi: usize| &m[(xi * g.cout + co) * tc + base..][..tx];
                // Aᵀ down the columns: s = m0 + m1 + m2, u = m1 − m2 − m3.
                for j in 0..4 {
                    let (r0, r1, r2, r3) = (row(j), row(4 + j), row(8 + j), row(12 + j));
                    let (sj, uj) = (&mut s[j * tx..][..tx], &mut u[j * tx..][..tx]);
                    for b in 0..tx {
                        sj[b] = r0[b] + r1[b] + r2[b];
                        uj[b] = r1[b] - r2[b] - r3[b];
                    }
                }
                for (dy, half) in [&*s, &*u].into_iter().enumerate() {
                    let oy = 2 * a + dy;
                    if oy >= ho {
                        break;
                    }
                    let (h0, h1, h2, h3) = (&half[..tx], &half[tx..2 * tx], &half[2 * tx..3 * tx], &half[3 * tx..]);
                    for (b, pair) in plane[oy * wo..(oy + 1) * wo].chunks_mut(2).enumerate() {
                        pair[0] = h0[b] + h1[b] + h2[b];
                        if let Some(q) = pair.get_mut(1) {
                            *q = h1[b] - h2[b] - h3[b];
                        }
                    }
                }
            }
        }
    }
}

/// The convolution (no bias) of `nimg` consecutive images `x` into `y`, with
/// filters already transformed by [`transform_filters`].
#[allow(clippy::too_many_arguments)]
pub fn forward_chunk(
    g: &Geometry,
    x: &[f32],
    nimg: usize,
    u: &[f32],
    y: &mut [f32],
    threads: usize,
    scratch: &mut Vec<f32>,
) {
    let (ty, tx) = tiles(g);
    let tc = nimg * ty * tx;
    let (vlen, mlen) = (16 * g.cin * tc, 16 * g.cout * tc);
    let work_len = 8 * (2 * tx + 2) + 8 * tx;
    scratch.resize(vlen + mlen + work_len, 0.0);
    let (v, rest) = scratch.split_at_mut(vlen);
    let (m, work) = rest.split_at_mut(mlen);
    transform_input(g, x, nimg, v, work);
    let (uplane, vplane, mplane) = (g.cout * g.cin, g.cin * tc, g.cout * tc);
    for xi in 0..16 {
        matmul(
            g.cout,
            tc,
            g.cin,
            &mut m[xi * mplane..][..mplane],
            tc,
            View::rows(&u[xi * uplane..][..uplane], g.cin),
            View::rows(&v[xi * vplane..][..vplane], tc),
            false,
            threads,
        );
    }
    transform_output(g, m, nimg, y, work);
}
