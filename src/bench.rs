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
use crate::model::{Arch, BnTrain, Stage, weights};

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

/// Forward and backward of ResNet-18 at `batch`×3×`size`×`size`, random weights.
pub fn model(batch: usize, size: usize, iters: usize, device: &Device) -> candle_core::Result<Vec<Measurement>> {
    let mut m = weights::random(Arch::ResNet18, 8, 0, device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), device)?;
    let labels = Tensor::from_vec((0..batch as u32).map(|i| i % 8).collect::<Vec<_>>(), batch, device)?;
    let sync = |t: &Tensor| {
        t.sum_all()
            .and_then(|s| s.to_dtype(DType::F32)?.to_scalar::<f32>())
            .map(|_| ())
    };
    // Warm-up: first calls allocate and, on CUDA, compile kernels.
    sync(&m.forward(&x)?)?;
    let mut out = Vec::new();
    let start = Instant::now();
    for _ in 0..iters {
        sync(&m.forward(&x)?)?;
    }
    out.push(measure(
        &format!("eval forward (batch {batch}, {size}px)"),
        iters * batch,
        start.elapsed().as_secs_f64(),
    ));
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
    let start = Instant::now();
    for _ in 0..iters {
        sync(&m.forward_range(&x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?)?;
    }
    out.push(measure(
        "forward up to layer3",
        iters * batch,
        start.elapsed().as_secs_f64(),
    ));
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
    let feats = m.forward_range(&x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?;
    let train_bn = BnTrain::stages(&[Stage::Layer4, Stage::Head]);
    let start = Instant::now();
    for _ in 0..iters {
        let feats = m.forward_range(&x, Stage::Stem, Stage::Layer3, BnTrain::EVAL)?;
        let logits = m.forward_range(&feats, Stage::Layer4, Stage::Head, train_bn)?;
        let loss = crate::model::resnet::cross_entropy(&logits, &labels)?;
        opt.backward_step(&loss)?;
    }
    sync(&m.fc.weight)?;
    out.push(measure(
        "forward + backward through layer4+fc",
        iters * batch,
        start.elapsed().as_secs_f64(),
    ));
    let start = Instant::now();
    for _ in 0..iters {
        let logits = m.forward_range(&feats, Stage::Layer4, Stage::Head, train_bn)?;
        let loss = crate::model::resnet::cross_entropy(&logits, &labels)?;
        opt.backward_step(&loss)?;
    }
    sync(&m.fc.weight)?;
    out.push(measure(
        "  same, layer3 output cached",
        iters * batch,
        start.elapsed().as_secs_f64(),
    ));
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
