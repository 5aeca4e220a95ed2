//! The trainer on tiny synthetic problems: it learns, frozen means frozen,
//! the frozen-prefix cache changes nothing, runs repeat exactly, and NaN and
//! stop requests end a phase cleanly.

use std::sync::Mutex;

use candle_core::Device;
use flowercam::config::{BatchNormMode, Config, ImageConfig};
use flowercam::data::{self, augment::Augmenter, cache::DecodedSet, synth::SynthSpec};
use flowercam::model::{Arch, BnTrain, ResNet, Stage, weights};
use flowercam::train::{self, Event, Phase, PhaseData, PhaseSpec, StopToken, TrainError, trainer};

fn dataset(per_class: usize, size: u32) -> DecodedSet {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        labels: vec![0, 9, 16],
        images_per_class: Some(per_class),
        size,
        shortcut: None,
        seed: 3,
        same_species: false,
    };
    data::synth::write(dir.path(), &spec, &|_, _| {}).unwrap();
    let ds = data::flowers102::load(dir.path(), &[0, 9, 16]).unwrap();
    data::cache::decode_dataset(&ds, 56, &|_, _| {}).unwrap()
}

fn phase_data<'a>(set: &'a DecodedSet, aug: &'a Augmenter) -> PhaseData<'a> {
    PhaseData {
        train: &set.train,
        test: &set.test,
        augmenter: aug,
        num_classes: 3,
    }
}

fn augmenter() -> Augmenter {
    let c = Config::defaults();
    Augmenter::new(
        &ImageConfig {
            resize: 56,
            size: 48,
            ..c.image
        },
        &c.augment,
    )
}

fn spec(phase: Phase, groups: Vec<(Stage, f64)>, epochs: usize) -> PhaseSpec {
    PhaseSpec {
        phase,
        epochs,
        groups,
        weight_decay: 0.0,
        batch_size: 8,
        batchnorm: BatchNormMode::FrozenEval,
        seed: 11,
    }
}

fn fresh(classes: usize) -> ResNet {
    let mut m = weights::random(Arch::ResNet18, 1000, 5, &Device::Cpu).unwrap();
    m.replace_head(classes, 5).unwrap();
    m
}

fn snapshot(m: &mut ResNet) -> Vec<(String, Vec<f32>)> {
    m.state_dict()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn fine_tuning_learns_and_frozen_stages_stay_bit_identical() {
    let set = dataset(16, 64);
    let aug = augmenter();
    let data = phase_data(&set, &aug);
    assert_eq!((set.train.len(), set.test.len()), (24, 24));
    let mut model = fresh(3);
    let before = snapshot(&mut model);
    let s = spec(Phase::FineTuning, vec![(Stage::Layer4, 1e-3), (Stage::Head, 1e-3)], 8);
    let out = train::train_phase(&mut model, &s, &data, &Device::Cpu, &StopToken::new(), &|_| {}).unwrap();
    let acc = out.epochs.last().unwrap().test_acc;
    // 24 test images, 3 classes: guessing gets 8 right on average, and 17 or
    // more right with probability about 1e-4. 17/24 = 70.8%.
    assert!(
        acc >= 17.0 / 24.0,
        "test accuracy {acc} after {:?}",
        out.epochs.iter().map(|e| e.test_acc).collect::<Vec<_>>()
    );
    let after = snapshot(&mut model);
    for ((k, a), (_, b)) in before.iter().zip(&after) {
        let frozen = !(k.starts_with("layer4") || k.starts_with("fc"));
        if frozen {
            assert!(a == b, "frozen tensor {k} changed");
        }
    }
    let moved = before
        .iter()
        .zip(&after)
        .filter(|((k, a), (_, b))| k.starts_with("layer4") && a != b)
        .count();
    assert!(moved > 20, "only {moved} layer4 tensors changed");
    // Running statistics of the trainable stage did move (train-mode BatchNorm).
    let rv = |s: &[(String, Vec<f32>)]| {
        s.iter()
            .find(|(k, _)| k == "layer4.1.bn2.running_var")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(rv(&before), rv(&after));
}

#[test]
fn cached_prefix_evaluation_equals_full_recomputation() {
    let set = dataset(8, 48);
    let aug = augmenter();
    let data = phase_data(&set, &aug);
    let mut model = fresh(3);
    train::train_phase(
        &mut model,
        &spec(Phase::FineTuning, vec![(Stage::Layer4, 1e-3), (Stage::Head, 1e-3)], 1),
        &data,
        &Device::Cpu,
        &StopToken::new(),
        &|_| {},
    )
    .unwrap();
    let cache = trainer::prefix_outputs(&model, &data, Stage::Layer3, 5, &Device::Cpu).unwrap();
    let (cached, probs_cached) =
        trainer::evaluate_cached(&model, &cache, &data, Stage::Layer4, 5, &Device::Cpu).unwrap();
    let imgs: Vec<_> = set.test.iter().collect();
    let x = aug.batch(&imgs, false, 0, 0, 0, &Device::Cpu).unwrap();
    let full = candle_nn::ops::softmax_last_dim(
        &model
            .forward_range(&x, Stage::Stem, Stage::Head, BnTrain::EVAL)
            .unwrap(),
    )
    .unwrap()
    .to_vec2::<f32>()
    .unwrap();
    for (a, b) in probs_cached.iter().flatten().zip(full.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(cached.count, set.test.len());
}

#[test]
fn same_seed_same_numbers() {
    let set = dataset(8, 48);
    let aug = augmenter();
    let data = phase_data(&set, &aug);
    let run = || {
        let mut model = fresh(3);
        train::train_phase(
            &mut model,
            &spec(Phase::FeatureExtraction, vec![(Stage::Head, 1e-2)], 2),
            &data,
            &Device::Cpu,
            &StopToken::new(),
            &|_| {},
        )
        .unwrap()
    };
    let (a, b) = (run(), run());
    let key = |o: &train::PhaseOutcome| {
        o.epochs
            .iter()
            .map(|e| (e.train_loss, e.test_loss, e.train_acc, e.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&a), key(&b));
    assert_eq!(a.test_probs, b.test_probs);
}

#[test]
fn nan_loss_fails_the_phase_with_a_message() {
    let set = dataset(8, 48);
    let aug = augmenter();
    let data = phase_data(&set, &aug);
    let mut model = fresh(3);
    model.fc.weight = (model.fc.weight.clone() * f64::NAN).unwrap();
    let err = train::train_phase(
        &mut model,
        &spec(Phase::FeatureExtraction, vec![(Stage::Head, 1e-3)], 2),
        &data,
        &Device::Cpu,
        &StopToken::new(),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::NonFinite { epoch: 1, batch: 1, .. }), "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
}

#[test]
fn stop_is_honoured_within_one_batch() {
    let set = dataset(8, 48);
    let aug = augmenter();
    let data = phase_data(&set, &aug);
    let mut model = fresh(3);
    let stop = StopToken::new();
    let batches = Mutex::new(0);
    let out = train::train_phase(
        &mut model,
        &spec(Phase::FeatureExtraction, vec![(Stage::Head, 1e-3)], 5),
        &data,
        &Device::Cpu,
        &stop,
        &|ev| {
            if let Event::Batch { .. } = ev {
                *batches.lock().unwrap() += 1;
                stop.stop();
            }
        },
    )
    .unwrap();
    assert!(out.stopped);
    assert_eq!(*batches.lock().unwrap(), 1);
    assert!(out.epochs.is_empty());
}

#[test]
fn a_stopped_workflow_keeps_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        labels: vec![0, 9],
        images_per_class: Some(8),
        size: 48,
        shortcut: None,
        seed: 1,
        same_species: false,
    };
    data::synth::write(&dir.path().join("data"), &spec, &|_, _| {}).unwrap();
    let mut config = Config::defaults();
    config.data.root = dir.path().join("data");
    config.data.classes = vec!["pink primrose".into(), "globe thistle".into()];
    config.output.dir = dir.path().join("runs");
    config.model.weights = "none".into();
    config.image.resize = 56;
    config.image.size = 48;
    config.train.batch_size = 4;
    config.train.feature_extraction.epochs = 1;
    config.train.fine_tuning.epochs = 3;
    let stop = StopToken::new();
    let events = Mutex::new(Vec::new());
    let emit = |ev: Event| {
        if let Event::Batch {
            phase: Phase::FineTuning,
            ..
        } = ev
        {
            stop.stop();
        }
        events
            .lock()
            .unwrap()
            .push(format!("{ev:?}").chars().take(30).collect::<String>());
    };
    let run = flowercam::workflow::run(&config, &Default::default(), &stop, &emit).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stopped"], true);
    assert_eq!(summary["finished"], false);
    assert!(summary["feature_extraction"]["final_test_acc"].is_number());
    assert!(summary["fine_tuning"].is_null(), "no FT epoch finished");
    assert!(run.join("fe.safetensors").is_file() && !run.join("ft.safetensors").exists());
    assert!(run.join("gradcam_fe.png").is_file() && run.join("report.md").is_file());
    assert!(
        std::fs::read_to_string(run.join("report.md"))
            .unwrap()
            .contains("stopped early")
    );
    assert!(events.lock().unwrap().last().unwrap().starts_with("Stopped"));
}

#[test]
fn resnet34_has_the_torchvision_structure() {
    let m = weights::random(Arch::ResNet34, 5, 0, &Device::Cpu).unwrap();
    assert_eq!(m.layers.iter().map(|l| l.len()).collect::<Vec<_>>(), vec![3, 4, 6, 3]);
    let x = candle_core::Tensor::zeros((1, 3, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.forward(&x).unwrap().dims(), &[1, 5]);
}
