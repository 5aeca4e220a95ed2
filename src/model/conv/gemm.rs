//! A safe face on the `gemm` crate (the kernel Candle's CPU matmul uses):
//! the convolutions hand it strided views of their own buffers, so no
//! operand is copied into a Tensor first.

/// A read-only row-major view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A dense row-major matrix with rows `rs` apart.
    pub fn rows(data: &'a [f32], rs: usize) -> View<'a> {
        View { data, rs, cs: 1 }
    }

    /// The transpose of a dense row-major matrix with rows `rs` apart.
    pub fn transposed(data: &'a [f32], rs: usize) -> View<'a> {
        View { data, rs: 1, cs: rs }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "{what}: {rows}×{cols} view past its buffer");
        }
    }
}

/// `dst[m×n] (rows dst_rs apart) = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`,
/// on `threads` threads (1: the caller parallelises around it).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    View::rows(dst, dst_rs).check(m, n, "gemm destination");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    lhs.check(m, k, "gemm lhs");
    rhs.check(k, n, "gemm rhs");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index the kernel touches was bounds-checked above, the
    // destination is borrowed mutably and the operands shared, so nothing
    // aliases the destination.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
