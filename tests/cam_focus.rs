//! The focus score catches a shortcut: when the planted mark is the only
//! difference between classes, a model that learns the task must look at the
//! mark, and the focus score flags that class.

use candle_core::Device;
use flowercam::cam::{self, Method, focus};
use flowercam::config::{BatchNormMode, Config, ImageConfig};
use flowercam::data::{self, augment::Augmenter, synth::SynthSpec};
use flowercam::model::{Arch, Stage, weights};
use flowercam::train::{self, Phase, PhaseData, PhaseSpec, StopToken};
use flowercam::workflow::display_mask;

#[test]
fn a_model_that_learned_the_shortcut_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        labels: vec![0, 51],
        images_per_class: Some(40),
        size: 112,
        shortcut: Some(1),
        seed: 2,
        same_species: true,
    };
    data::synth::write(dir.path(), &spec, &|_, _| {}).unwrap();
    let ds = data::flowers102::load(dir.path(), &[0, 51]).unwrap();
    let set = data::cache::decode_dataset(&ds, 104, &|_, _| {}).unwrap();
    let c = Config::defaults();
    let image = ImageConfig {
        resize: 104,
        size: 96,
        ..c.image.clone()
    };
    let aug = Augmenter::new(&image, &c.augment);
    let data = PhaseData {
        train: &set.train,
        test: &set.test,
        augmenter: &aug,
        num_classes: 2,
    };
    let mut model = weights::random(Arch::ResNet18, 2, 4, &Device::Cpu).unwrap();
    model.replace_head(2, 4).unwrap();
    let phase = PhaseSpec {
        phase: Phase::FineTuning,
        epochs: 10,
        groups: vec![
            (Stage::Layer1, 1e-3),
            (Stage::Layer2, 1e-3),
            (Stage::Layer3, 1e-3),
            (Stage::Layer4, 1e-3),
            (Stage::Head, 1e-3),
        ],
        weight_decay: 0.0,
        batch_size: 4,
        batchnorm: BatchNormMode::FrozenEval,
        seed: 9,
    };
    // Up to 10 epochs, ending as soon as the test accuracy shows the shortcut learned.
    let stop = StopToken::new();
    let on_event = |ev: train::Event| {
        if let train::Event::EpochDone { metrics, .. } = ev
            && metrics.test_acc >= 36.0 / 40.0
        {
            stop.stop();
        }
    };
    let out = train::train_phase(&mut model, &phase, &data, &Device::Cpu, &stop, &on_event).unwrap();
    let acc = out.epochs.last().unwrap().test_acc;
    // The flowers are identical, so only the mark separates the classes: 40
    // test images, and 36 or more right by guessing has probability ~1e-7.
    assert!(
        acc >= 36.0 / 40.0,
        "the model did not learn the shortcut: {:?}",
        out.epochs.iter().map(|e| e.test_acc).collect::<Vec<_>>()
    );

    let marked: Vec<_> = set.test.iter().filter(|im| im.label == 1).collect();
    let x = aug.batch(&marked, false, 0, 0, 0, &Device::Cpu).unwrap();
    let raw = cam::compute(&model, &x, Stage::Layer4, &vec![1; marked.len()], Method::GradCam).unwrap();
    let scored: Vec<(usize, focus::Focus)> = marked
        .iter()
        .zip(&raw.maps)
        .map(|(im, m)| {
            let up = cam::upsample(m, raw.height, raw.width, 96, 96);
            (1, focus::focus(&up, &display_mask(im, 96).unwrap()))
        })
        .collect();
    let names = vec!["pink primrose".to_string(), "wild pansy".to_string()];
    let summary = focus::by_class(&names, &scored, 0.5);
    assert_eq!(summary.len(), 1);
    assert!(summary[0].flagged, "shortcut class not flagged: {summary:?}");
}
