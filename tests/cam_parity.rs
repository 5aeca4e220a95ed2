//! The CAM family against pytorch-grad-cam (raw maps and its normalised,
//! resized output) and against the notebook's own grad_cam, on the seeded
//! torchvision ResNet-18 of the model parity test.

mod common;

use candle_core::{Device, Tensor};
use common::{fixture, rel_err, write_formula_weights};
use flowercam::cam::{self, Method};
use flowercam::model::{Arch, Stage, weights};

fn setup() -> (
    flowercam::model::ResNet,
    std::collections::HashMap<String, Tensor>,
    Vec<usize>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    write_formula_weights(&path, None, None);
    let (m, _) = weights::load(&path, Arch::ResNet18, &Device::Cpu).unwrap();
    let r = candle_core::safetensors::load(fixture("cam_parity.safetensors"), &Device::Cpu).unwrap();
    let targets = r["cam_targets"]
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|t| t as usize)
        .collect();
    (m, r, targets)
}

fn as_tensor(c: &cam::RawCams) -> Tensor {
    Tensor::from_vec(c.maps.concat(), (c.maps.len(), c.height, c.width), &Device::Cpu).unwrap()
}

/// pytorch-grad-cam's final maps: min-max normalise, bilinear resize, min-max again.
fn finals(c: &cam::RawCams, size: usize) -> Tensor {
    let maps: Vec<f32> = c
        .maps
        .iter()
        .flat_map(|m| {
            let mut m = m.clone();
            cam::normalise_min_max(&mut m);
            // The library normalises again after resizing (aggregate_multi_layers).
            let mut up = cam::upsample(&m, c.height, c.width, size, size);
            cam::normalise_min_max(&mut up);
            up
        })
        .collect();
    Tensor::from_vec(maps, (c.maps.len(), size, size), &Device::Cpu).unwrap()
}

#[test]
fn gradient_methods_match_pytorch_grad_cam() {
    let (m, r, targets) = setup();
    for (method, layer, key) in [
        (Method::GradCam, Stage::Layer4, "gradcam.layer4"),
        (Method::GradCamPlusPlus, Stage::Layer4, "gradcam++.layer4"),
        (Method::HiResCam, Stage::Layer4, "hirescam.layer4"),
    ] {
        let c = cam::compute(&m, &r["cam_input"], layer, &targets, method).unwrap();
        let raw_err = rel_err(&as_tensor(&c), &r[&format!("{key}.raw")]);
        assert!(raw_err < 1e-4, "{key} raw: {raw_err}");
        // Min-max normalisation divides by (max - min): float noise in a
        // nearly flat map grows by max / (max - min), and so may the error.
        let amplification = c
            .maps
            .iter()
            .map(|m| {
                let (lo, hi) = m.iter().fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
                hi / (hi - lo).max(1e-12)
            })
            .fold(1f32, f32::max);
        let final_err = rel_err(&finals(&c, 128), &r[&format!("{key}.final")]);
        assert!(
            final_err < 1e-3 * amplification,
            "{key} final: {final_err} (amplification {amplification})"
        );
    }
}

#[test]
fn eigencam_matches_up_to_the_sign_of_its_principal_direction() {
    let (m, r, targets) = setup();
    let c = cam::compute(&m, &r["cam_input"], Stage::Layer4, &targets, Method::EigenCam).unwrap();
    let proj = r["eigencam.layer4.projection"].to_vec3::<f32>().unwrap();
    for (i, ours) in c.maps.iter().enumerate() {
        let theirs: Vec<f32> = proj[i].concat();
        let scale = theirs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let matches = |sign: f32| {
            ours.iter()
                .zip(&theirs)
                .all(|(o, t)| (o - (sign * t).max(0.0)).abs() <= 1e-3 * scale)
        };
        assert!(matches(1.0) || matches(-1.0), "image {i}: {ours:?} vs ±{theirs:?}");
    }
}

#[test]
fn layer4_gradcam_equals_the_notebook_and_cam_up_to_scale() {
    let (m, r, targets) = setup();
    let c = cam::compute(&m, &r["cam_input"], Stage::Layer4, &targets, Method::GradCam).unwrap();
    // The notebook divides by the max after upsampling.
    let ours: Vec<f32> = c
        .maps
        .iter()
        .flat_map(|raw| {
            let mut up = cam::upsample(raw, c.height, c.width, 128, 128);
            cam::normalise_by_max(&mut up);
            up
        })
        .collect();
    let ours = Tensor::from_vec(ours, (2, 128, 128), &Device::Cpu).unwrap();
    let err = rel_err(&ours, &r["notebook.layer4"]);
    assert!(err < 1e-3, "notebook grad_cam: {err}");
    // At layer4, Grad-CAM is CAM (fc weights · activations) up to a positive scale.
    let acts = m
        .forward_range(
            &r["cam_input"],
            Stage::Stem,
            Stage::Layer4,
            flowercam::model::BnTrain::EVAL,
        )
        .unwrap();
    for (i, t) in targets.iter().enumerate() {
        let w = m.fc.weight.get(*t).unwrap().reshape((1, 512, 1, 1)).unwrap();
        let cam_map = acts
            .get(i)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .broadcast_mul(&w)
            .unwrap()
            .sum(1)
            .unwrap()
            .relu()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ratio: Vec<f32> = cam_map
            .iter()
            .zip(&c.maps[i])
            .filter(|(a, _)| **a > 1e-6)
            .map(|(a, b)| b / a)
            .collect();
        assert!(!ratio.is_empty());
        assert!(
            ratio
                .iter()
                .all(|r| (r - ratio[0]).abs() < 1e-3 * ratio[0].abs() && *r > 0.0),
            "{ratio:?}"
        );
    }
}
