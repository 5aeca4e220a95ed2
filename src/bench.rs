//! `flowercam bench`: throughput of the parts that decide how long a person
//! waits — decode, augmentation, forward and backward — on this machine.
//! Measurements live here, never in timed tests.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use rayon::prelude::*;

use crate::config::Config;
use crate::data::augment::Augmenter;
use crate::data::cache::{CachedImage, decode_resized};
use crate::data::synth::{SynthSpec, render};
use crate::model::{Arch, BnTrain, ConvPath, ResNet, Stage, weights};

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub name: String,
    pub images_per_second: f64,
    pub seconds: f64,
}

fn measure(name: &str, images: usize, seconds: f64) -> Measurement {
    let m = Measurement {
        name: name.to_string(),
        images_per_second: images as f64 / seconds,
        seconds,
    };
    println!(
        "{:<44} {:>9.1} img/s  ({images} images in {seconds:.2} s)",
        m.name, m.images_per_second
    );
    m
}

/// Decode + resize and augmentation, on Flowers-sized synthetic JPEGs.
pub fn data(config: &Config, images: usize) -> std::io::Result<Vec<Measurement>> {
    let dir = tempfile::tempdir()?;
    let spec = SynthSpec {
        labels: vec![0],
        images_per_class: Some(images),
        size: 500,
        shortcut: None,
        seed: 1,
        same_species: false,
    };
    // Official photos are about 500×670 JPEGs; write that many distinct ones.
    let paths: Vec<_> = (0..images)
        .into_par_iter()
        .map(|i| {
            let (img, _) = render(&spec, i % 8, i);
            let p = dir.path().join(format!("{i}.jpg"));
            img.save(&p).map(|_| p).map_err(std::io::Error::other)
        })
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let decoded: Vec<_> = paths
        .par_iter()
        .map(|p| decode_resized(p, config.image.resize))
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    let mut out = vec![measure(
        "decode + resize to 256 (JPEG ~500 px)",
        images,
        start.elapsed().as_secs_f64(),
    )];
    let cached: Vec<CachedImage> = decoded
        .into_iter()
        .map(|rgb| CachedImage {
            rgb,
            label: 0,
            mask: None,
            path: "bench".into(),
        })
        .collect();
    let refs: Vec<&CachedImage> = cached.iter().collect();
    let aug = Augmenter::new(&config.image, &config.augment);
    let rounds = (2048 / images).max(1);
    let start = Instant::now();
    for r in 0..rounds {
        aug.batch(&refs, true, 0, r as u64, 0, &Device::Cpu)
            .map_err(std::io::Error::other)?;
    }
    out.push(measure(
        "augment (crop+flip+jitter+normalise, 224)",
        rounds * images,
        start.elapsed().as_secs_f64(),
    ));
    let start = Instant::now();
    for _ in 0..rounds {
        aug.batch(&refs, false, 0, 0, 0, &Device::Cpu)
            .map_err(std::io::Error::other)?;
    }
    out.push(measure(
        "test transform (centre crop, 224)",
        rounds * images,
        start.elapsed().as_secs_f64(),
    ));
    Ok(out)
}

/// Forward and backward of ResNet-18 at `batch`×3×`size`×`size`, random
/// weights, once with Candle's stock convolutions and once with the fast
/// path, side by side in one run (run-to-run noise is larger than some of
/// the differences).
pub fn model(
    batch: usize,
    size: usize,
    iters: usize,
    paths: &[ConvPath],
    device: &Device,
) -> candle_core::Result<Vec<Measurement>> {
    let base = weights::random(Arch::ResNet18, 8, 0, device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), device)?;
    let labels = Tensor::from_vec((0..batch as u32).map(|i| i % 8).collect::<Vec<_>>(), batch, device)?;
    let mut out = Vec::new();
    for &path in paths {
        let name = path.name();
        println!("{name} convolutions:");
        let mut m = base.fresh_copy()?;
        m.conv_path = path;
        out.extend(model_with(&mut m, name, &x, &labels, iters)?);
    }
    if paths != [ConvPath::Stock, ConvPath::Fast] {
        return Ok(out);
    }
    let half = out.len() / 2;
    println!("{:<44} {:>9} {:>9} {:>8}", "img/s", "stock", "fast", "speedup");
    for (s, f) in out[..half].iter().zip(&out[half..]) {
        println!(
            "{:<44} {:>9.1} {:>9.1} {:>7.2}×",
            f.name.trim_start_matches("fast: "),
            s.images_per_second,
            f.images_per_second,
            f.images_per_second / s.images_per_second
        );
    }
    Ok(out)
}

fn sync(t: &Tensor) -> candle_core::Result<()> {
    t.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>().map(|_| ())
}

/// The model measurements of one convolution path, named `{path}: …`.
fn model_with(
    m: &mut ResNet,
    path: &str,
    x: &Tensor,
    labels: &Tensor,
    iters: usize,
) -> candle_core::Result<Vec<Measurement>> {
    let batch = x.dim(0)?;
    let size = x.dim(3)?;
    let timed = |name: &str, f: &mut dyn FnMut() -> candle_core::Result<()>| -> candle_core::Result<Measurement> {
        let start = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        Ok(measure(
            &format!("{path}: {name}"),
            iters * batch,
            start.elapsed().as_secs_f64(),
        ))
    };
    // Warm-up: first calls allocate and, on CUDA, compile kernels.
    sync(&m.forward(x)?)?;
    let mut out = vec![timed(&format!("eval forward (batch {batch}, {size}px)"), &mut || {
        sync(&m.forward(x)?)
    })?];
    let mut stage_times = [0f64; 6];
    for _ in 0..iters {
        let mut y = x.clone();
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            let t = Instant::now();
            y = m.forward_stage(s, &y, BnTrain::EVAL)?;
            sync(&y)?;
            stage_times[i] += t.elapsed().as_secs_f64();
        }
    }
    let per: Vec<String> = Stage::ALL
        .iter()
        .zip(stage_times)
        .map(|(s, t)| format!("{} {:.3}", s.name(), t / iters as f64))
        .collect();
    println!("  seconds per batch by stage: {}", per.join(" / "));
    out.push(timed("forward up to layer3", &mut || {
        sync(&m.forward_range(x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?)
    })?);
    let groups = m.make_trainable(&[Stage::Layer4, Stage::Head])?;
    let vars: Vec<Var> = groups.into_iter().flat_map(|(_, v)| v).collect();
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: 1e-4,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let feats = m.forward_range(x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?;
    let train_bn = BnTrain::stages(&[Stage::Layer4, Stage::Head]);
    let mut step = |feats: &Tensor| -> candle_core::Result<()> {
        let logits = m.forward_range(feats, Stage::Layer4, Stage::Head, train_bn)?;
        let loss = crate::model::resnet::cross_entropy(&logits, labels)?;
        opt.backward_step(&loss)
    };
    out.push(timed("forward + backward through layer4+fc", &mut || {
        let feats = m.forward_range(x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?;
        step(&feats)?;
        sync(&m.fc.weight)
    })?);
    out.push(timed("  same, layer3 output cached", &mut || {
        step(&feats)?;
        sync(&m.fc.weight)
    })?);
    Ok(out)
}

/// CAMs per second at `size` px, in batches of 16, for each method: phases 3
/// and 5 need 32 (16 + 8 per model at the default 8 classes).
pub fn cams(size: usize, images: usize, device: &Device) -> candle_core::Result<Vec<Measurement>> {
    let m = weights::random(Arch::ResNet18, 8, 0, device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let x = Tensor::randn(0f32, 1.0, (16, 3, size, size), device)?;
    let targets: Vec<usize> = (0..16).map(|i| i % 8).collect();
    let mut out = Vec::new();
    for method in crate::cam::Method::ALL {
        crate::cam::compute(&m, &x, Stage::Layer4, &targets, method)?;
        let start = Instant::now();
        let mut done = 0;
        while done < images {
            crate::cam::compute(&m, &x, Stage::Layer4, &targets, method)?;
            done += 16;
        }
        out.push(measure(
            &format!("{} at layer4 ({size}px, batches of 16)", method.name()),
            done,
            start.elapsed().as_secs_f64(),
        ));
    }
    Ok(out)
}

/// Every convolution shape of ResNet-18 at `size` px, batch `batch`, on the
/// fast path alone: forward, input gradient and weight gradient, in seconds
/// per batch and direct-convolution GFLOP/s (Winograd does fewer
/// multiplications, so it can exceed the machine's peak). Where a change to
/// `model::conv` is measured.
pub fn convs(batch: usize, size: usize, iters: usize) {
    use crate::model::conv::{self, Geometry};
    let time = |f: &mut dyn FnMut()| {
        f();
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed().as_secs_f64() / iters as f64
    };
    let stem = size.div_ceil(2).div_ceil(2);
    // (cin, input side, cout, kernel, stride, how often ResNet-18 has it)
    let mut shapes = vec![(3, size, 64, 7, 2, 1)];
    let (mut cin, mut side) = (64, stem);
    for (i, cout) in [64usize, 128, 256, 512].into_iter().enumerate() {
        if i > 0 {
            shapes.push((cin, side, cout, 3, 2, 1));
            shapes.push((cin, side, cout, 1, 2, 1));
            side = side.div_ceil(2);
        }
        shapes.push((cout, side, cout, 3, 1, if i == 0 { 4 } else { 3 }));
        cin = cout;
    }
    println!("fast convolutions, batch {batch}, {size} px: seconds per batch (direct-equivalent GFLOP/s)");
    println!(
        "  {:<28} {:<9} {:>16} {:>16} {:>16}",
        "shape", "algorithm", "forward", "input grad", "weight grad"
    );
    let mut total = [0f64; 3];
    for (cin, side, cout, k, stride, count) in shapes {
        let g = Geometry {
            n: batch,
            cin,
            h: side,
            w: side,
            cout,
            k,
            stride,
            pad: k / 2,
        };
        let x = vec![0.5f32; batch * cin * side * side];
        let w = vec![0.01f32; cout * g.kdim()];
        let dy = vec![0.01f32; batch * cout * g.ho() * g.wo()];
        let flops = 2.0 * (batch * cout * g.kdim() * g.ho() * g.wo()) as f64;
        let secs = [
            time(&mut || drop(std::hint::black_box(conv::forward(&g, &x, &w, &[0.0], true)))),
            time(&mut || drop(std::hint::black_box(conv::backward_data(&g, &dy, &w)))),
            time(&mut || drop(std::hint::black_box(conv::backward_filter(&g, &x, &dy)))),
        ];
        let cols: Vec<String> = secs
            .iter()
            .map(|s| format!("{s:.4} ({:>5.0})", flops / s / 1e9))
            .collect();
        for (t, s) in total.iter_mut().zip(secs) {
            *t += s * count as f64;
        }
        println!(
            "  {:<28} {:<9} {:>16} {:>16} {:>16}",
            format!("{cin}→{cout} {side}px {k}×{k}/{stride} ×{count}"),
            format!("{:?}", g.algorithm()),
            cols[0],
            cols[1],
            cols[2]
        );
    }
    println!(
        "  all convolutions: forward {:.3} s ({:.1} img/s), input grad {:.3} s, weight grad {:.3} s",
        total[0],
        batch as f64 / total[0],
        total[1],
        total[2]
    );
}

/// Peak resident memory of this process so far, in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The full workflow, timed: seconds per phase, training images/s, peak RSS.
/// Uses `config.data.root` when it exists, else writes a synthetic dataset
/// with the real split sizes to a temporary folder.
pub fn workflow(config: &Config) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = config.clone();
    config.output.dir = tmp.path().join("runs");
    if !config.data.root.exists() {
        let labels = crate::data::flowers102::select_classes(&config.data).map_err(|e| e.to_string())?;
        let spec = SynthSpec {
            labels,
            images_per_class: None,
            size: 320,
            shortcut: None,
            seed: config.seed,
            same_species: false,
        };
        let root = tmp.path().join("data");
        crate::data::synth::write(&root, &spec, &|_, _| {}).map_err(|e| e.to_string())?;
        config.data.root = root;
        println!("synthetic dataset with the real split sizes (160 / 412) at 320 px");
    }
    let (fe, ft) = (config.train.feature_extraction.epochs, config.train.fine_tuning.epochs);
    println!(
        "workflow: {fe} + {ft} epochs at {} px, batch {}, weights {}",
        config.image.size, config.train.batch_size, config.model.weights
    );
    let ips = std::sync::Mutex::new(Vec::<(crate::train::Phase, f64)>::new());
    let emit = |ev: crate::train::Event| {
        if let crate::train::Event::EpochDone { phase, metrics, .. } = &ev {
            ips.lock()
                .expect("not poisoned")
                .push((*phase, metrics.images_per_second));
            println!(
                "  {} epoch {:2}: {:.1} s, {:.1} img/s",
                phase.key(),
                metrics.epoch,
                metrics.seconds,
                metrics.images_per_second
            );
        }
    };
    let start = Instant::now();
    let run_dir = crate::workflow::run(&config, &Default::default(), &crate::train::StopToken::new(), &emit)?;
    let total = start.elapsed().as_secs_f64();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    println!("seconds per phase:");
    if let Some(t) = summary["timings"].as_object() {
        for (k, v) in t {
            println!("  {k:<20} {:>8.1}", v.as_f64().unwrap_or(0.0));
        }
    }
    for phase in [crate::train::Phase::FeatureExtraction, crate::train::Phase::FineTuning] {
        let v: Vec<f64> = ips
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, v)| *v)
            .collect();
        if !v.is_empty() {
            println!(
                "  {} training: {:.1} img/s (mean over epochs)",
                phase.key(),
                v.iter().sum::<f64>() / v.len() as f64
            );
        }
    }
    println!(
        "total {total:.1} s; peak RSS {}",
        peak_rss_mib()
            .map(|m| format!("{m:.0} MiB"))
            .unwrap_or_else(|| "unknown".into())
    );
    Ok(())
}

/// Time drawing each screen of the fixed TUI state into a `width`×`height`
/// buffer (what a frame costs before the terminal sees it), colour and
/// `NO_COLOR`, pictures already encoded.
pub fn tui(width: u16, height: u16, iters: usize) {
    use crate::tui::{app::Screen, fixture};
    println!("TUI drawing, {width}×{height}, mean of {iters} frames (pictures encoded once beforehand):");
    for screen in Screen::ALL {
        let mut line = format!("  {:<9}", screen.title());
        for no_color in [false, true] {
            let (app, mut pictures) = fixture::state(screen, no_color);
            fixture::draw(&app, &mut pictures, width, height);
            let t = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(fixture::draw(&app, &mut pictures, width, height));
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0 / iters as f64;
            line += &format!("  {}: {ms:.3} ms", if no_color { "NO_COLOR" } else { "colour" });
        }
        println!("{line}");
    }
}
