//! A fixed, mid-run state with every screen populated: the snapshot tests
//! draw it and `flowercam bench --what tui` times drawing it. Numbers are
//! made up but consistent (accuracies match confusion matrices' shape).

use std::collections::BTreeMap;
use std::path::PathBuf;

use image::RgbImage;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::app::{App, BatchState, CamShown, ModelCaption, PhaseLog, RunState, Screen};
use super::pictures::{PicId, Pictures};
use crate::browse::{CamTarget, Query, SampleFilter};
use crate::cam::Method;
use crate::cam::focus::ClassFocus;
use crate::data::ClassRow;
use crate::report::{EpochRow, PhaseSummary, Samples, Summary};
use crate::train::Phase;

/// The default configuration's eight species, as the real app shows them.
fn classes() -> Vec<String> {
    crate::config::Config::defaults().data.classes
}

/// A deterministic picture: a gradient with a disc, tinted per `seed`.
pub fn picture(seed: u32, size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let (cx, cy) = (size as f32 / 2.0, size as f32 / 2.0);
        let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / size as f32;
        let disc = d < 0.3;
        let g = (x * 255 / size) as u8;
        let tint = (seed * 53 % 200) as u8;
        if disc {
            image::Rgb([230, tint, 255 - tint])
        } else {
            image::Rgb([g / 3, 80 + g / 2, 40])
        }
    })
}

fn epochs(n: usize, start_acc: f64, end_acc: f64) -> Vec<EpochRow> {
    (1..=n)
        .map(|e| {
            let t = e as f64 / n as f64;
            let acc = start_acc + (end_acc - start_acc) * t;
            EpochRow {
                epoch: e,
                train_loss: 2.0 - 1.5 * t,
                train_acc: (acc + 0.08).min(1.0),
                test_loss: 2.1 - 1.3 * t,
                test_acc: acc,
                seconds: 12.0 + e as f64 * 0.1,
            }
        })
        .collect()
}

fn confusion(correct: &[usize]) -> Vec<Vec<usize>> {
    let n = correct.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        correct[i]
                    } else if j == (i + 1) % n {
                        20 - correct[i]
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect()
}

fn phase(acc: &[usize], rows: Vec<EpochRow>) -> PhaseSummary {
    PhaseSummary {
        final_test_acc: rows.last().map(|r| r.test_acc).unwrap_or(0.0),
        per_class_acc: acc.iter().map(|&c| c as f64 / 20.0).collect(),
        confusion: confusion(acc),
        epochs: rows,
        images_per_second: 30.0,
        stopped: false,
        checkpoint: Some("fe.safetensors".into()),
    }
}

fn focus(classes: &[String], values: &[f64]) -> Vec<ClassFocus> {
    classes
        .iter()
        .zip(values)
        .map(|(c, &v)| ClassFocus {
            class: c.to_string(),
            mean_energy: v,
            pointing_hits: v,
            images: 4,
            flagged: v < 0.5,
        })
        .collect()
}

/// The fixed state: FT running (epoch 3 of 5), FE finished, CAM shown.
pub fn state(screen: Screen, no_color: bool) -> (App, Pictures) {
    let classes = classes();
    let mut app = App::new(
        "flowers",
        Some("demo: synthetic flowers, random weights".into()),
        no_color,
    );
    app.screen = screen;
    app.state = RunState::Running;
    app.device = "cpu (2 threads)".into();
    app.run_dir = Some(PathBuf::from("runs/20261203-120000-flowers"));
    app.data_root = Some(PathBuf::from("data/flowers-102"));
    app.table = classes
        .iter()
        .enumerate()
        .map(|(i, c)| ClassRow {
            name: c.to_string(),
            label: Some(i * 3),
            train: 20,
            test: 20 + i * 9,
            masks: 20,
        })
        .collect();
    app.skipped = vec![(
        PathBuf::from("data/flowers-102/jpg/image_00042.jpg"),
        "not a JPEG".into(),
    )];
    let fe_acc = [12, 9, 15, 11, 17, 13, 10, 8];
    let ft_acc = [18, 16, 19, 15, 20, 17, 18, 7];
    let fe_rows = epochs(5, 0.4, 0.66);
    let ft_rows = epochs(3, 0.7, 0.82);
    app.phases = vec![
        PhaseLog {
            phase: Phase::FeatureExtraction,
            planned_epochs: 5,
            batches: 5,
            trainable: "fc".into(),
            epochs: fe_rows.clone(),
            seconds: Some(61.0),
            started_at: 2.0,
        },
        PhaseLog {
            phase: Phase::FineTuning,
            planned_epochs: 5,
            batches: 5,
            trainable: "layer4, fc".into(),
            epochs: ft_rows.clone(),
            seconds: None,
            started_at: 70.0,
        },
    ];
    app.current = Some(Phase::FineTuning);
    app.batch = Some(BatchState {
        phase: Phase::FineTuning,
        epoch: 4,
        batch: 2,
        batches: 5,
        loss: 0.61,
        images_per_second: 41.5,
    });
    app.batch_losses = (0..17).map(|i| 2.0 / (1.0 + i as f64 * 0.3)).collect();
    let mut samples = Samples::default();
    samples.misclassified.insert("feature_extraction".into(), vec![3, 7]);
    app.summary = Some(Summary {
        name: "flowers".into(),
        classes: classes.clone(),
        dataset: BTreeMap::new(),
        device: "cpu".into(),
        weights: "none".into(),
        stopped: false,
        finished: false,
        feature_extraction: Some(phase(&fe_acc, fe_rows)),
        fine_tuning: Some(phase(&ft_acc, epochs(5, 0.7, 0.86))),
        timings: BTreeMap::new(),
        focus: BTreeMap::from([
            (
                "feature_extraction".to_string(),
                focus(&classes, &[0.71, 0.64, 0.58, 0.62, 0.69, 0.55, 0.6, 0.31]),
            ),
            (
                "fine_tuning".to_string(),
                focus(&classes, &[0.78, 0.7, 0.66, 0.61, 0.74, 0.63, 0.69, 0.22]),
            ),
        ]),
        samples,
        files: Vec::new(),
    });
    app.filters_ready = true;
    app.now = 100.0;
    app.started_at = 0.0;
    app.thumbnails = (0..classes.len()).collect();
    app.cam.class = 7;
    app.cam.models = vec!["FE", "FT"];
    app.cam.shown = Some(CamShown {
        query: Query {
            class: 7,
            filter: SampleFilter::All,
            index: 1,
            target: CamTarget::TrueLabel,
            method: Method::GradCam,
        },
        count: 4,
        test_index: Some(131),
        models: vec![
            ModelCaption {
                name: "FE",
                predicted: 7,
                confidence: 0.64,
                target: 7,
                focus: Some(0.31),
            },
            ModelCaption {
                name: "FT",
                predicted: 0,
                confidence: 0.52,
                target: 7,
                focus: Some(0.18),
            },
        ],
    });
    let mut pictures = Pictures::halfblocks(no_color);
    for c in 0..classes.len() {
        pictures.set(PicId::Thumb(c), picture(c as u32, 32));
    }
    pictures.set(PicId::Sample, picture(7, 48));
    pictures.set(PicId::Overlay(0), picture(11, 48));
    pictures.set(PicId::Overlay(1), picture(12, 48));
    pictures.set(PicId::Filters, picture(3, 64));
    pictures.set(PicId::Activations, picture(4, 64));
    (app, pictures)
}

/// Draw `app` into a fresh `width`×`height` buffer.
pub fn draw(app: &App, pictures: &mut Pictures, width: u16, height: u16) -> Buffer {
    let area = Rect::new(0, 0, width, height);
    let mut buf = Buffer::empty(area);
    super::ui::render(app, pictures, area, &mut buf);
    buf
}
