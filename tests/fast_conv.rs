//! The fast CPU convolution path (`model::conv`) against Candle's own
//! operations: forward, input/weight/bias gradients, the fused residual
//! ReLU, the stem's max pool and BatchNorm folding, for every convolution
//! shape ResNet uses, odd image sizes and batches of 1 and 32. The
//! torchvision parity of the whole model on this path is checked in
//! `model_parity.rs`.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::rel_err;
use flowercam::model::conv::{self, Algorithm, Geometry};
use flowercam::model::{Arch, BnTrain, ConvPath, Stage, weights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Candle's reference: conv2d, bias, ReLU as separate operations.
fn stock(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize, relu: bool) -> Tensor {
    let y = x
        .conv2d(w, pad, stride, 1, 1)
        .unwrap()
        .broadcast_add(&b.reshape((1, (), 1, 1)).unwrap())
        .unwrap();
    if relu { y.relu().unwrap() } else { y }
}

/// One convolution shape: (batch, cin, h, w, cout, kernel, stride, pad).
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

/// Every shape ResNet-18 uses, scaled down in channels for test speed, at
/// odd sizes and on both sides of the Winograd threshold.
const CASES: &[Case] = &[
    (2, 3, 65, 47, 8, 7, 2, 3),  // stem 7×7/2
    (2, 8, 33, 24, 16, 3, 1, 1), // 3×3/1, Winograd
    (1, 4, 65, 47, 8, 3, 1, 1),  // 3×3/1, Winograd, odd, batch 1
    (3, 16, 7, 5, 8, 3, 1, 1),   // 3×3/1, im2col (small image)
    (2, 4, 65, 47, 8, 3, 2, 1),  // 3×3/2
    (2, 8, 65, 47, 16, 1, 2, 0), // 1×1/2 downsample
    (2, 8, 9, 11, 4, 1, 1, 0),   // 1×1/1
    (32, 4, 16, 12, 8, 3, 1, 1), // batch 32, Winograd: images spread over threads
    (32, 8, 7, 7, 8, 3, 2, 1),   // batch 32, im2col
    (32, 3, 29, 31, 4, 7, 2, 3), // batch 32 stem
    // im2col built in bands of output rows (a cache's worth each), the last
    // band partial: 7 bands of the stem, 3 of a 64-channel 3×3/2.
    (1, 3, 229, 101, 8, 7, 2, 3),
    (1, 64, 45, 41, 8, 3, 2, 1),
];

fn geometry(c: &Case) -> Geometry {
    let &(n, cin, h, w, cout, k, stride, pad) = c;
    Geometry {
        n,
        cin,
        h,
        w,
        cout,
        k,
        stride,
        pad,
    }
}

#[test]
fn cases_cover_both_algorithms() {
    let algos: Vec<Algorithm> = CASES.iter().map(|c| geometry(c).algorithm()).collect();
    assert!(algos.contains(&Algorithm::Winograd) && algos.contains(&Algorithm::Im2col));
    // ResNet-18 at 224 px: every 3×3 stride-1 layer uses Winograd, down to
    // layer4's 7×7; smaller maps (layer4 at 112 px) use im2col.
    let at = |side| Geometry {
        n: 1,
        cin: 64,
        h: side,
        w: side,
        cout: 64,
        k: 3,
        stride: 1,
        pad: 1,
    };
    assert_eq!(at(56).algorithm(), Algorithm::Winograd);
    assert_eq!(at(14).algorithm(), Algorithm::Winograd);
    assert_eq!(at(7).algorithm(), Algorithm::Winograd);
    assert_eq!(at(4).algorithm(), Algorithm::Im2col);
}

#[test]
fn forward_matches_candle_for_every_shape() {
    for (i, c) in CASES.iter().enumerate() {
        let &(n, cin, h, w, cout, k, stride, pad) = c;
        let x = random(&[n, cin, h, w], 1 + i as u64);
        let wt = random(&[cout, cin, k, k], 100 + i as u64);
        let b = random(&[cout], 200 + i as u64);
        for relu in [false, true] {
            let got = conv::conv2d(&x, &wt, Some(&b), stride, pad, relu).unwrap();
            let want = stock(&x, &wt, &b, stride, pad, relu);
            assert_eq!(got.dims(), want.dims(), "case {c:?}");
            let err = rel_err(&got, &want);
            assert!(err < 1e-5, "case {c:?} relu {relu}: relative error {err}");
        }
        let got = conv::conv2d(&x, &wt, None, stride, pad, false).unwrap();
        let want = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
        assert!(rel_err(&got, &want) < 1e-5, "case {c:?} without bias");
    }
}

#[test]
fn non_contiguous_inputs_are_handled() {
    // A transposed view: the op must copy it, not read it as NCHW.
    let x = random(&[2, 4, 12, 10], 7).transpose(2, 3).unwrap();
    let w = random(&[8, 4, 3, 3], 8);
    let got = conv::conv2d(&x, &w, None, 1, 1, false).unwrap();
    let want = x.conv2d(&w, 1, 1, 1, 1).unwrap();
    assert!(rel_err(&got, &want) < 1e-5);
}

/// Gradients of `Σ r ⊙ f(x, w, b)` for a fixed random `r`, which exercises
/// every output element with a different weight.
fn grads(c: &Case, seed: u64, f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor) -> (Tensor, Tensor, Tensor) {
    let &(n, cin, h, w, cout, k, _, _) = c;
    let x = Var::from_tensor(&random(&[n, cin, h, w], seed)).unwrap();
    let wt = Var::from_tensor(&random(&[cout, cin, k, k], seed + 1)).unwrap();
    let b = Var::from_tensor(&random(&[cout], seed + 2)).unwrap();
    let y = f(x.as_tensor(), wt.as_tensor(), b.as_tensor());
    let r = random(y.dims(), seed + 3);
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let get = |v: &Var| g.get(v.as_tensor()).expect("gradient").clone();
    (get(&x), get(&wt), get(&b))
}

#[test]
fn gradients_match_candle_autograd() {
    for (i, c) in CASES.iter().enumerate() {
        let &(.., stride, pad) = c;
        for relu in [false, true] {
            let seed = 1000 + 10 * i as u64;
            let fast = grads(c, seed, |x, w, b| {
                conv::conv2d(x, w, Some(b), stride, pad, relu).unwrap()
            });
            let want = grads(c, seed, |x, w, b| stock(x, w, b, stride, pad, relu));
            for (name, got, want) in [
                ("dx", &fast.0, &want.0),
                ("dw", &fast.1, &want.1),
                ("db", &fast.2, &want.2),
            ] {
                let err = rel_err(got, want);
                assert!(err < 1e-4, "case {c:?} relu {relu}: {name} relative error {err}");
            }
        }
    }
}

#[test]
fn constant_input_gets_no_gradient_but_weights_do() {
    let x = random(&[2, 4, 16, 16], 3);
    let w = Var::from_tensor(&random(&[8, 4, 3, 3], 4)).unwrap();
    let y = conv::conv2d(&x, w.as_tensor(), None, 1, 1, true).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    let want = x
        .conv2d(w.as_tensor(), 1, 1, 1, 1)
        .unwrap()
        .relu()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(rel_err(g.get(w.as_tensor()).unwrap(), want.get(w.as_tensor()).unwrap()) < 1e-4);
}

#[test]
fn add_relu_matches_and_differentiates() {
    let a = Var::from_tensor(&random(&[3, 5, 7, 9], 1)).unwrap();
    let b = Var::from_tensor(&random(&[3, 5, 7, 9], 2)).unwrap();
    let r = random(&[3, 5, 7, 9], 3);
    let run = |y: Tensor| {
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        (
            y,
            g.get(a.as_tensor()).unwrap().clone(),
            g.get(b.as_tensor()).unwrap().clone(),
        )
    };
    let fast = run(conv::add_relu(a.as_tensor(), b.as_tensor()).unwrap());
    let want = run((a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap());
    assert_eq!(rel_err(&fast.0, &want.0), 0.0);
    assert_eq!(rel_err(&fast.1, &want.1), 0.0);
    assert_eq!(rel_err(&fast.2, &want.2), 0.0);
}

#[test]
fn max_pool_matches_padded_candle_pool() {
    for (h, w) in [(112, 112), (33, 47), (2, 3), (1, 1)] {
        // Non-negative like the stem's ReLU output, where zero padding is exact.
        let x = random(&[2, 3, h, w], (h * w) as u64).relu().unwrap();
        let got = conv::max_pool_3x3_s2(&x).unwrap();
        let want = x
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap()
            .max_pool2d_with_stride(3, 2)
            .unwrap();
        assert_eq!(got.dims(), want.dims(), "{h}×{w}");
        assert_eq!(rel_err(&got, &want), 0.0, "{h}×{w}");
    }
}

#[test]
fn folded_batchnorm_equals_conv_then_batchnorm() {
    let x = random(&[2, 6, 15, 13], 1);
    let w = random(&[10, 6, 3, 3], 2);
    let gamma = (random(&[10], 3) + 1.5).unwrap();
    let beta = random(&[10], 4);
    let mean = random(&[10], 5);
    let var = (random(&[10], 6) + 1.2).unwrap();
    let eps = 1e-5;
    let shape = (1, 10, 1, 1);
    let normed = x
        .conv2d(&w, 1, 1, 1, 1)
        .unwrap()
        .broadcast_sub(&mean.reshape(shape).unwrap())
        .unwrap()
        .broadcast_div(&(&var + eps).unwrap().sqrt().unwrap().reshape(shape).unwrap())
        .unwrap()
        .broadcast_mul(&gamma.reshape(shape).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape(shape).unwrap())
        .unwrap();
    let (fw, fb) = conv::fold_batchnorm(&w, &gamma, &beta, &mean, &var, eps).unwrap();
    let folded = conv::conv2d(&x, &fw, Some(&fb), 1, 1, false).unwrap();
    let err = rel_err(&folded, &normed);
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let x = random(&[1, 4, 2, 2], 1);
    // Kernel larger than the padded image.
    assert!(conv::conv2d(&x, &random(&[4, 4, 7, 7], 2), None, 1, 1, false).is_err());
    // Channel mismatch.
    assert!(conv::conv2d(&x, &random(&[4, 3, 1, 1], 3), None, 1, 0, false).is_err());
    // Wrong bias length.
    assert!(conv::conv2d(&x, &random(&[4, 4, 1, 1], 4), Some(&random(&[3], 5)), 1, 0, false).is_err());
}

/// The whole network: the fast path (folded BatchNorm, own kernels) gives
/// the same logits as Candle's stock path in eval mode, and the same
/// gradients when layer3 onwards train with batch statistics.
#[test]
fn whole_model_fast_path_matches_stock_path() {
    let fast = weights::random(Arch::ResNet18, 5, 3, &Device::Cpu).unwrap();
    let mut stock_model = fast.fresh_copy().unwrap();
    stock_model.conv_path = ConvPath::Stock;
    assert_eq!(fast.conv_path, ConvPath::Fast);
    let x = random(&[2, 3, 67, 61], 9);
    let err = rel_err(&fast.forward(&x).unwrap(), &stock_model.forward(&x).unwrap());
    assert!(err < 1e-4, "eval logits: relative error {err}");

    // Square for the gradients: Candle's own conv2d backward (the stock
    // side) derives the transposed convolution's output padding from the
    // height alone, and fails on odd widths whose parity differs.
    let x = random(&[2, 3, 67, 67], 9);
    let trained = [Stage::Layer3, Stage::Layer4, Stage::Head];
    let labels = Tensor::new(&[1u32, 4], &Device::Cpu).unwrap();
    let grads = |m: &flowercam::model::ResNet| {
        let mut m = m.fresh_copy().unwrap();
        let groups = m.make_trainable(&trained).unwrap();
        let bn = BnTrain::stages(&trained);
        let frozen = m.forward_range(&x, Stage::Stem, Stage::Layer2, BnTrain::EVAL).unwrap();
        let logits = m.forward_range(&frozen, Stage::Layer3, Stage::Head, bn).unwrap();
        let loss = flowercam::model::resnet::cross_entropy(&logits, &labels).unwrap();
        let g = loss.backward().unwrap();
        groups
            .into_iter()
            .flat_map(|(_, vars)| vars)
            .map(|v| g.get(v.as_tensor()).unwrap().flatten_all().unwrap())
            .collect::<Vec<_>>()
    };
    let (gf, gs) = (grads(&fast), grads(&stock_model));
    assert_eq!(gf.len(), gs.len());
    let gf = Tensor::cat(&gf, 0).unwrap();
    let gs = Tensor::cat(&gs, 0).unwrap();
    let err = rel_err(&gf, &gs);
    assert!(err < 1e-4, "train-mode gradients: relative error {err}");
    assert_eq!(gf.dtype(), DType::F32);
}

/// Per-channel mean of NCHW `x`, kept as `1 × C × 1 × 1`.
fn channel_mean(x: &Tensor) -> Tensor {
    x.mean_keepdim(3)
        .unwrap()
        .mean_keepdim(2)
        .unwrap()
        .mean_keepdim(0)
        .unwrap()
}

/// Train-mode BatchNorm written out in Candle operations, as PyTorch defines it.
fn batchnorm_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> Tensor {
    let shape = (1, gamma.dim(0).unwrap(), 1, 1);
    let centred = x.broadcast_sub(&channel_mean(x)).unwrap();
    let var = channel_mean(&centred.sqr().unwrap());
    let y = centred
        .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&gamma.reshape(shape).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape(shape).unwrap())
        .unwrap();
    if relu { y.relu().unwrap() } else { y }
}

#[test]
fn fused_train_batchnorm_matches_candle_forward_statistics_and_gradients() {
    for (i, dims) in [[2usize, 6, 7, 5], [32, 4, 3, 3], [1, 3, 9, 11]].iter().enumerate() {
        let c = dims[1];
        // An offset mean, so a one-pass Σx² would lose digits.
        let xt = random(dims, 10 + i as u64).affine(2.0, 3.0).unwrap();
        let x = Var::from_tensor(&xt).unwrap();
        let gamma = Var::from_tensor(&(random(&[c], 20 + i as u64) + 1.5).unwrap()).unwrap();
        let beta = Var::from_tensor(&random(&[c], 30 + i as u64)).unwrap();
        let r = random(dims, 40 + i as u64);
        let want_mean = channel_mean(&xt);
        let want_var = channel_mean(&xt.broadcast_sub(&want_mean).unwrap().sqr().unwrap());
        for relu in [false, true] {
            let (y, mean, var) = conv::batch_norm_train(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, relu)
                .unwrap()
                .expect("f32 CPU tensors take the fused path");
            let want = batchnorm_reference(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), 1e-5, relu);
            assert!(rel_err(&y, &want) < 1e-5, "{dims:?} relu {relu}: output");
            assert!(
                rel_err(&mean, &want_mean.flatten_all().unwrap()) < 1e-5,
                "{dims:?}: mean"
            );
            assert!(
                rel_err(&var, &want_var.flatten_all().unwrap()) < 1e-4,
                "{dims:?}: variance"
            );
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gw = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("dx", &x), ("dgamma", &gamma), ("dbeta", &beta)] {
                let (got, want) = (g.get(v.as_tensor()).unwrap(), gw.get(v.as_tensor()).unwrap());
                let err = rel_err(got, want);
                assert!(err < 1e-4, "{dims:?} relu {relu}: {name} relative error {err}");
            }
        }
    }
}

#[test]
fn fused_batchnorm_updates_running_statistics_like_the_stock_path() {
    let fast = weights::random(Arch::ResNet18, 5, 3, &Device::Cpu).unwrap();
    let mut stock_model = fast.fresh_copy().unwrap();
    stock_model.conv_path = ConvPath::Stock;
    let x = random(&[3, 3, 64, 64], 11);
    let bn = BnTrain::stages(&[Stage::Layer1, Stage::Layer2]);
    let yf = fast.forward_range(&x, Stage::Stem, Stage::Layer2, bn).unwrap();
    let ys = stock_model.forward_range(&x, Stage::Stem, Stage::Layer2, bn).unwrap();
    assert!(rel_err(&yf, &ys) < 1e-4);
    for ((name, a), (_, b)) in fast.batchnorms().into_iter().zip(stock_model.batchnorms()) {
        for (what, ta, tb) in [
            ("running_mean", a.running_mean.as_tensor(), b.running_mean.as_tensor()),
            ("running_var", a.running_var.as_tensor(), b.running_var.as_tensor()),
        ] {
            let err = rel_err(ta, tb);
            assert!(err < 1e-4, "{name}.{what}: relative error {err}");
        }
    }
}
