//! The five phases of the notebook as one sequence run by a worker thread:
//! explore → feature extraction → Grad-CAM of the FE model → fine-tuning →
//! compare. Each finished step is written to the run directory at once, so
//! a stopped or failed run keeps everything that finished.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;

use crate::cam::{self, colormap::Colormap, focus};
use crate::config::Config;
use crate::data::{
    self,
    augment::{Augmenter, center_crop_box},
    cache::{CachedImage, DecodedSet},
};
use crate::model::{self, ResNet, Stage};
use crate::report::{self, PhaseSummary, RunDir, Summary, sheet::SheetRow};
use crate::train::{self, Event, Phase, PhaseData, PhaseSpec, StopToken};

/// Which phases to run (`--phases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSet(pub Vec<Phase>);

impl Default for PhaseSet {
    fn default() -> Self {
        PhaseSet(vec![
            Phase::Explore,
            Phase::FeatureExtraction,
            Phase::GradcamFe,
            Phase::FineTuning,
            Phase::Compare,
        ])
    }
}

impl PhaseSet {
    /// Parse `explore,fe,gradcam,ft,compare` (any subset, any order).
    pub fn parse(text: &str) -> Result<PhaseSet, String> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let p = match word {
                "explore" => Phase::Explore,
                "fe" | "feature_extraction" => Phase::FeatureExtraction,
                "gradcam" | "gradcam_fe" => Phase::GradcamFe,
                "ft" | "fine_tuning" => Phase::FineTuning,
                "compare" => Phase::Compare,
                other => {
                    return Err(format!(
                        "--phases: unknown phase {other:?}, expected explore, fe, gradcam, ft, compare"
                    ));
                }
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err("--phases names no phase".into());
        }
        Ok(PhaseSet(out))
    }

    pub fn has(&self, p: Phase) -> bool {
        self.0.contains(&p)
    }
}

/// How a run should be labelled and what it runs.
#[derive(Debug, Clone, Default)]
pub struct WorkflowOptions {
    pub phases: PhaseSet,
    /// Shown in the report and headers, e.g. "demo: synthetic data, random weights".
    pub label: Option<String>,
}

/// A model trained in a phase, with what the CAM phases need.
struct Trained {
    model: ResNet,
    test_probs: Vec<Vec<f32>>,
}

fn phase_spec(config: &Config, phase: Phase) -> Result<PhaseSpec, String> {
    let p = if phase == Phase::FeatureExtraction {
        &config.train.feature_extraction
    } else {
        &config.train.fine_tuning
    };
    let groups = p
        .trainable
        .iter()
        .map(|name| {
            Stage::from_name(name)
                .map(|s| (s, p.lr[name]))
                .ok_or_else(|| format!("unknown stage {name}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PhaseSpec {
        phase,
        epochs: p.epochs,
        groups,
        weight_decay: p.weight_decay,
        batch_size: config.train.batch_size,
        batchnorm: config.train.batchnorm,
        seed: config.seed,
    })
}

/// The test-time crop of a cached image, for display.
pub fn display_crop(img: &CachedImage, size: u32) -> RgbImage {
    display_crop_rgb(&img.rgb, size)
}

/// The test-time centre crop of a resized image: what the network saw.
pub fn display_crop_rgb(rgb: &RgbImage, size: u32) -> RgbImage {
    let b = center_crop_box(rgb.width(), rgb.height(), size);
    let crop = image::imageops::crop_imm(rgb, b.left, b.top, b.width, b.height).to_image();
    if crop.dimensions() == (size, size) {
        crop
    } else {
        data::cache::resize_rgb(rgb, None, size, size)
    }
}

/// The flower mask under the same crop, if the image has one.
pub fn display_mask(img: &CachedImage, size: u32) -> Option<Vec<bool>> {
    let mask = img.mask.as_ref()?;
    let b = center_crop_box(mask.width(), mask.height(), size);
    let crop = image::imageops::crop_imm(mask, b.left, b.top, b.width, b.height).to_image();
    let crop = if crop.dimensions() == (size, size) {
        crop
    } else {
        data::cache::resize_gray(mask, None, size, size)
    };
    Some(crop.pixels().map(|p| p.0[0] > 127).collect())
}

/// Grad-CAMs for test images, upsampled to the crop size and divided by their max.
pub fn cams_for(
    model: &ResNet,
    images: &[&CachedImage],
    targets: &[usize],
    config: &Config,
    device: &Device,
) -> candle_core::Result<Vec<Vec<f32>>> {
    let aug = Augmenter::new(&config.image, &config.augment);
    let layer = Stage::from_name(&config.cam.layer).unwrap_or(Stage::Layer4);
    let s = config.image.size as usize;
    let mut out = Vec::new();
    for (chunk, t) in images.chunks(16).zip(targets.chunks(16)) {
        let x = aug.batch(chunk, false, 0, 0, 0, device)?;
        let method = cam::Method::from_name(&config.cam.method).unwrap_or(cam::Method::GradCam);
        let raw = cam::compute(model, &x, layer, t, method)?;
        for m in raw.maps {
            let mut up = cam::upsample(&m, raw.height, raw.width, s, s);
            cam::normalise_by_max(&mut up);
            out.push(up);
        }
    }
    Ok(out)
}

fn first_per_class(test: &[CachedImage], classes: usize, per_class: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut count = vec![0; classes];
    let mut out = Vec::new();
    for (i, img) in test.iter().enumerate() {
        if count[img.label] < per_class && keep(i) {
            count[img.label] += 1;
            out.push(i);
        }
    }
    out
}

fn predicted(probs: &[Vec<f32>]) -> Vec<usize> {
    train::metrics::argmax_rows(probs)
}

/// Run the workflow on a thread of its own. A panic in it becomes a
/// `Failed` event (and an error from `join`), so listeners always hear how
/// the run ended.
pub fn spawn(
    config: Config,
    options: WorkflowOptions,
    stop: StopToken,
    emit: impl Fn(Event) + Send + Sync + 'static,
) -> std::io::Result<std::thread::JoinHandle<Result<PathBuf, String>>> {
    std::thread::Builder::new()
        .name("flowercam-worker".into())
        .spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&config, &options, &stop, &emit)));
            result.unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "worker panicked".into());
                emit(Event::Failed {
                    message: format!("internal error: {message}"),
                });
                Err(message)
            })
        })
}

/// Run the workflow. Events go to `emit` (from this thread); returns the run directory.
pub fn run(
    config: &Config,
    options: &WorkflowOptions,
    stop: &StopToken,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<PathBuf, String> {
    let t_total = Instant::now();
    let device = crate::device::open(crate::device::parse_device(&config.device)?)?;
    let mut run = RunDir::create(&config.output.dir, &config.name)
        .map_err(|e| format!("{}: cannot create the run folder: {e}", config.output.dir.display()))?;
    let config_path = run.file("config.toml");
    crate::fsutil::write_atomic(&config_path, config.to_toml().as_bytes())
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut summary = Summary {
        name: config.name.clone(),
        device: crate::device::describe(&device),
        weights: config.model.weights.clone(),
        ..Default::default()
    };
    if let Some(label) = &options.label {
        summary.name = format!("{} ({label})", config.name);
    }
    emit(Event::RunStarted {
        run_dir: run.path.clone(),
        device: summary.device.clone(),
        name: summary.name.clone(),
    });
    let result = run_phases(config, options, stop, emit, &device, &mut run, &mut summary);
    summary.timings.insert("total".into(), t_total.elapsed().as_secs_f64());
    let finalise = |summary: &mut Summary, run: &RunDir| -> Result<(), String> {
        summary.files = list_files(&run.path);
        summary.files.push("report.md".into());
        summary.files.sort();
        run.write_summary(summary).map_err(|e| format!("summary.json: {e}"))?;
        crate::fsutil::write_atomic(&run.file("report.md"), report::markdown(summary).as_bytes())
            .map_err(|e| format!("report.md: {e}"))
    };
    match result {
        Ok(stopped) => {
            summary.stopped = stopped;
            summary.finished = !stopped;
            finalise(&mut summary, &run)?;
            emit(if stopped {
                Event::Stopped {
                    run_dir: run.path.clone(),
                }
            } else {
                Event::Finished {
                    run_dir: run.path.clone(),
                }
            });
            Ok(run.path)
        }
        Err(message) => {
            let _ = finalise(&mut summary, &run);
            emit(Event::Failed {
                message: message.clone(),
            });
            Err(message)
        }
    }
}

fn list_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The phases themselves; `Ok(true)` when stopped early.
fn run_phases(
    config: &Config,
    options: &WorkflowOptions,
    stop: &StopToken,
    emit: &(dyn Fn(Event) + Sync),
    device: &Device,
    run: &mut RunDir,
    summary: &mut Summary,
) -> Result<bool, String> {
    // Phase 1: explore and decode once.
    let t = Instant::now();
    let ds = data::load(config).map_err(|e| e.to_string())?;
    let decoded: DecodedSet = data::cache::decode_dataset(&ds, config.image.resize, &|done, total| {
        emit(Event::DatasetProgress { done, total })
    })?;
    let class_names: Vec<String> = ds.classes.iter().map(|c| c.name.clone()).collect();
    summary.classes = class_names.clone();
    summary
        .dataset
        .insert("root".into(), ds.root.display().to_string().into());
    summary.dataset.insert("format".into(), ds.format.into());
    summary.dataset.insert("train".into(), decoded.train.len().into());
    summary.dataset.insert("test".into(), decoded.test.len().into());
    summary.dataset.insert(
        "skipped".into(),
        serde_json::json!(
            decoded
                .skipped
                .iter()
                .map(|(p, why)| format!("{}: {why}", p.display()))
                .collect::<Vec<_>>()
        ),
    );
    emit(Event::DatasetReady {
        root: ds.root.clone(),
        table: ds.class_table(),
        skipped: decoded.skipped.clone(),
    });
    summary.timings.insert("explore".into(), t.elapsed().as_secs_f64());
    run.write_summary(summary).map_err(|e| e.to_string())?;

    let (base, _) = model::load_configured(config, device, 1000, &mut |_, _| {})?;
    let augmenter = Augmenter::new(&config.image, &config.augment);
    let data = PhaseData {
        train: &decoded.train,
        test: &decoded.test,
        augmenter: &augmenter,
        num_classes: class_names.len(),
    };
    let cmap = Colormap::by_name(&config.cam.colormap);
    let size = config.image.size;

    let train_one =
        |phase: Phase, file: &str, run: &mut RunDir, summary: &mut Summary| -> Result<(Trained, bool), String> {
            let spec = phase_spec(config, phase)?;
            let mut model = base.fresh_copy().map_err(|e| e.to_string())?;
            model
                .replace_head(class_names.len(), config.seed)
                .map_err(|e| e.to_string())?;
            let run_cell = RefCell::new(&mut *run);
            let write_error = RefCell::new(None);
            let on_event = |ev: Event| {
                if let Event::EpochDone { phase, metrics, .. } = &ev
                    && let Err(e) = run_cell.borrow_mut().append_metrics(phase.key(), metrics)
                {
                    *write_error.borrow_mut() = Some(e.to_string());
                }
                emit(ev);
            };
            let outcome =
                train::train_phase(&mut model, &spec, &data, device, stop, &on_event).map_err(|e| e.to_string())?;
            if let Some(e) = write_error.into_inner() {
                return Err(format!("metrics.jsonl: {e}"));
            }
            let checkpoint = if outcome.epochs.is_empty() {
                None
            } else {
                model::weights::save_checkpoint(&mut model, &class_names, &run.file(file))
                    .map_err(|e| e.to_string())?;
                Some(file)
            };
            let ps = PhaseSummary::from_epochs(&outcome.epochs, outcome.stopped, checkpoint);
            let classes_of = predicted(&outcome.test_probs);
            let mis: Vec<usize> = classes_of
                .iter()
                .zip(&decoded.test)
                .enumerate()
                .filter(|(_, (p, img))| **p != img.label)
                .map(|(i, _)| i)
                .collect();
            summary.samples.misclassified.insert(phase.key().to_string(), mis);
            let preds = classes_of
                .iter()
                .zip(&outcome.test_probs)
                .map(|(&c, p)| (c, p[c]))
                .collect();
            summary.samples.predictions.insert(phase.key().to_string(), preds);
            if phase == Phase::FeatureExtraction {
                summary.feature_extraction = ps
            } else {
                summary.fine_tuning = ps
            }
            summary.timings.insert(phase.key().into(), outcome.seconds);
            emit(Event::PhaseDone {
                phase,
                seconds: outcome.seconds,
            });
            let epochs_of = |p: &Option<PhaseSummary>| p.as_ref().map(|p| p.epochs.clone()).unwrap_or_default();
            let curves = report::curves::render(
                &epochs_of(&summary.feature_extraction),
                &epochs_of(&summary.fine_tuning),
            );
            run.write_png("curves.png", &curves)
                .map_err(|e| format!("curves.png: {e}"))?;
            run.write_summary(summary).map_err(|e| e.to_string())?;
            Ok((
                Trained {
                    model,
                    test_probs: outcome.test_probs,
                },
                outcome.stopped,
            ))
        };

    let mut fe: Option<Trained> = None;
    if options.phases.has(Phase::FeatureExtraction) {
        let (trained, stopped) = train_one(Phase::FeatureExtraction, "fe.safetensors", run, summary)?;
        if stopped {
            return Ok(true);
        }
        fe = Some(trained);
    }
    // Phase 3 runs between the two trainings, as in the notebook.
    if let Some(fe) = fe.as_ref().filter(|_| options.phases.has(Phase::GradcamFe)) {
        gradcam_fe(config, fe, &decoded, &class_names, &cmap, device, run, summary, emit)?;
    }
    let mut ft: Option<Trained> = None;
    if options.phases.has(Phase::FineTuning) {
        let (trained, stopped) = train_one(Phase::FineTuning, "ft.safetensors", run, summary)?;
        if stopped {
            return Ok(true);
        }
        ft = Some(trained);
    }

    // Phase 5: the first test image of each class, through both models.
    if options.phases.has(Phase::Compare) && (fe.is_some() || ft.is_some()) {
        let t = Instant::now();
        emit(Event::PhaseStarted {
            phase: Phase::Compare,
            epochs: 0,
            batches: 0,
            trainable: String::new(),
        });
        let picks = first_per_class(&decoded.test, class_names.len(), 1, |_| true);
        summary.samples.phase5 = picks.clone();
        let imgs: Vec<&CachedImage> = picks.iter().map(|&i| &decoded.test[i]).collect();
        let mut columns: Vec<(&str, Vec<Vec<f32>>, &Trained)> = Vec::new();
        for (name, m) in [("FE", &fe), ("FT", &ft)] {
            if let Some(m) = m {
                let t = cam_targets(config, &imgs, &m.test_probs, &picks);
                columns.push((
                    name,
                    cams_for(&m.model, &imgs, &t, config, device).map_err(|e| e.to_string())?,
                    m,
                ));
            }
        }
        let rows: Vec<SheetRow> = imgs
            .iter()
            .enumerate()
            .map(|(r, img)| {
                let crop = display_crop(img, size);
                let mut cells = vec![(crop.clone(), "image".to_string())];
                for (name, cams, m) in &columns {
                    let p = &m.test_probs[picks[r]];
                    let pred = predicted(std::slice::from_ref(p))[0];
                    cells.push((
                        cam::colormap::overlay(&crop, &cams[r], &cmap),
                        format!("{name}: {} {:.0}%", short(&class_names[pred]), p[pred] * 100.0),
                    ));
                }
                SheetRow {
                    title: class_names[img.label].clone(),
                    cells,
                }
            })
            .collect();
        run.write_png("gradcam_compare.png", &report::sheet::render(&rows))
            .map_err(|e| format!("gradcam_compare.png: {e}"))?;
        emit(Event::Artifact {
            phase: Phase::Compare,
            path: run.file("gradcam_compare.png"),
        });
        if let Some(ft_model) = &ft {
            score_focus(config, "fine_tuning", &ft_model.model, &decoded, summary, device)?;
        }
        summary.timings.insert("compare".into(), t.elapsed().as_secs_f64());
        emit(Event::PhaseDone {
            phase: Phase::Compare,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(false)
}

fn short(name: &str) -> String {
    name.chars().take(14).collect()
}

/// CAM targets: the true label, or the model's prediction when configured.
fn cam_targets(config: &Config, imgs: &[&CachedImage], probs: &[Vec<f32>], picks: &[usize]) -> Vec<usize> {
    if config.cam.target == "predicted" {
        picks
            .iter()
            .map(|&i| predicted(std::slice::from_ref(&probs[i]))[0])
            .collect()
    } else {
        imgs.iter().map(|im| im.label).collect()
    }
}

/// Phase 3: the first two correctly classified test images per class.
#[allow(clippy::too_many_arguments)]
fn gradcam_fe(
    config: &Config,
    fe: &Trained,
    decoded: &DecodedSet,
    class_names: &[String],
    cmap: &Colormap,
    device: &Device,
    run: &mut RunDir,
    summary: &mut Summary,
    emit: &(dyn Fn(Event) + Sync),
) -> Result<(), String> {
    let t = Instant::now();
    emit(Event::PhaseStarted {
        phase: Phase::GradcamFe,
        epochs: 0,
        batches: 0,
        trainable: String::new(),
    });
    let preds = predicted(&fe.test_probs);
    let picks = first_per_class(&decoded.test, class_names.len(), 2, |i| {
        preds.get(i) == Some(&decoded.test[i].label)
    });
    summary.samples.phase3 = picks.clone();
    let imgs: Vec<&CachedImage> = picks.iter().map(|&i| &decoded.test[i]).collect();
    let targets: Vec<usize> = imgs.iter().map(|im| im.label).collect();
    let cams = cams_for(&fe.model, &imgs, &targets, config, device).map_err(|e| e.to_string())?;
    let size = config.image.size;
    let rows: Vec<SheetRow> = (0..class_names.len())
        .map(|c| {
            let mut cells = Vec::new();
            for (k, img) in imgs.iter().enumerate().filter(|(_, im)| im.label == c) {
                let crop = display_crop(img, size);
                let p = fe.test_probs[picks[k]][c];
                cells.push((crop.clone(), "image".to_string()));
                cells.push((
                    cam::colormap::overlay(&crop, &cams[k], cmap),
                    format!("Grad-CAM {:.0}%", p * 100.0),
                ));
            }
            let title = if cells.is_empty() {
                format!("{} (no correctly classified test image)", class_names[c])
            } else {
                class_names[c].clone()
            };
            SheetRow { title, cells }
        })
        .collect();
    run.write_png("gradcam_fe.png", &report::sheet::render(&rows))
        .map_err(|e| format!("gradcam_fe.png: {e}"))?;
    // The notebook's optional views: frozen conv1 filters and layer4 maps of the first sample.
    let filters = cam::views::conv1_filters(&fe.model, 4).map_err(|e| e.to_string())?;
    run.write_png("filters_conv1.png", &filters)
        .map_err(|e| format!("filters_conv1.png: {e}"))?;
    // The first Grad-CAM sample, or the first test image when the FE model got none right.
    if let Some(first) = imgs.first().copied().or(decoded.test.first()) {
        let aug = Augmenter::new(&config.image, &config.augment);
        let x = aug.batch(&[first], false, 0, 0, 0, device).map_err(|e| e.to_string())?;
        let acts = cam::views::layer4_activations(&fe.model, &x, 48).map_err(|e| e.to_string())?;
        run.write_png("activations_layer4.png", &acts)
            .map_err(|e| format!("activations_layer4.png: {e}"))?;
    }
    emit(Event::Artifact {
        phase: Phase::GradcamFe,
        path: run.file("gradcam_fe.png"),
    });
    score_focus(config, "feature_extraction", &fe.model, decoded, summary, device)?;
    summary.timings.insert("gradcam_fe".into(), t.elapsed().as_secs_f64());
    run.write_summary(summary).map_err(|e| e.to_string())?;
    emit(Event::PhaseDone {
        phase: Phase::GradcamFe,
        seconds: t.elapsed().as_secs_f64(),
    });
    Ok(())
}

/// Focus of `model` on the first few masked test images of every class.
fn score_focus(
    config: &Config,
    key: &str,
    model: &ResNet,
    decoded: &DecodedSet,
    summary: &mut Summary,
    device: &Device,
) -> Result<(), String> {
    let n = summary.classes.len();
    let picks = first_per_class(&decoded.test, n, 4, |i| decoded.test[i].mask.is_some());
    if picks.is_empty() {
        return Ok(());
    }
    let imgs: Vec<&CachedImage> = picks.iter().map(|&i| &decoded.test[i]).collect();
    let targets: Vec<usize> = imgs.iter().map(|im| im.label).collect();
    let cams = cams_for(model, &imgs, &targets, config, device).map_err(|e| e.to_string())?;
    let scored: Vec<(usize, focus::Focus)> = imgs
        .iter()
        .zip(&cams)
        .filter_map(|(img, cam)| display_mask(img, config.image.size).map(|m| (img.label, focus::focus(cam, &m))))
        .collect();
    summary.focus.insert(
        key.to_string(),
        focus::by_class(&summary.classes, &scored, config.cam.focus_threshold),
    );
    Ok(())
}
