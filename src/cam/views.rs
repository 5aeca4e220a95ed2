//! The notebook's optional views: conv1's 64 RGB filters (each min-max
//! normalised on its own) and the first 16 layer4 activation maps of an
//! image (viridis), as image grids.

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};

use crate::model::{BnTrain, ResNet, Stage};

/// conv1 filters as a 4×16 grid of `scale`-times enlarged 7×7 RGB tiles.
pub fn conv1_filters(model: &ResNet, scale: u32) -> candle_core::Result<RgbImage> {
    let w: Vec<Vec<f32>> = model
        .conv1
        .weight
        .to_device(&Device::Cpu)?
        .flatten_from(1)?
        .to_vec2::<f32>()?;
    let (k, gap) = (7u32, 2u32);
    let tile = k * scale + gap;
    let mut img = RgbImage::from_pixel(16 * tile + gap, 4 * tile + gap, Rgb([255, 255, 255]));
    for (f, vals) in w.iter().enumerate().take(64) {
        let (lo, hi) = vals
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let norm = |v: f32| (((v - lo) / (hi - lo + 1e-8)) * 255.0).round() as u8;
        let (ox, oy) = (gap + (f as u32 % 16) * tile, gap + (f as u32 / 16) * tile);
        for y in 0..k * scale {
            for x in 0..k * scale {
                let (ky, kx) = ((y / scale) as usize, (x / scale) as usize);
                let at = |c: usize| vals[c * 49 + ky * 7 + kx];
                img.put_pixel(ox + x, oy + y, Rgb([norm(at(0)), norm(at(1)), norm(at(2))]));
            }
        }
    }
    Ok(img)
}

/// matplotlib's viridis at a few anchors, interpolated linearly.
fn viridis(t: f32) -> Rgb<u8> {
    const A: [[f32; 3]; 5] = [
        [68., 1., 84.],
        [59., 82., 139.],
        [33., 145., 140.],
        [94., 201., 98.],
        [253., 231., 37.],
    ];
    let x = t.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    let c = |k: usize| (A[i][k] + (A[i + 1][k] - A[i][k]) * f).round() as u8;
    Rgb([c(0), c(1), c(2)])
}

/// The first 16 channels of layer4's output for one preprocessed image
/// (1×3×H×W), each scaled to its own range, as a 2×8 grid.
pub fn layer4_activations(model: &ResNet, x: &Tensor, cell: u32) -> candle_core::Result<RgbImage> {
    let acts = model
        .forward_range(x, Stage::Stem, Stage::Layer4, BnTrain::EVAL)?
        .get(0)?
        .to_device(&Device::Cpu)?;
    let (_, h, w) = acts.dims3()?;
    let maps = acts.flatten_from(1)?.to_vec2::<f32>()?;
    let gap = 2u32;
    let mut img = RgbImage::from_pixel(8 * (cell + gap) + gap, 2 * (cell + gap) + gap, Rgb([255, 255, 255]));
    for (c, m) in maps.iter().enumerate().take(16) {
        let (lo, hi) = m.iter().fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let (ox, oy) = (gap + (c as u32 % 8) * (cell + gap), gap + (c as u32 / 8) * (cell + gap));
        for y in 0..cell {
            for x in 0..cell {
                let (sy, sx) = ((y as usize * h) / cell as usize, (x as usize * w) / cell as usize);
                let v = (m[sy * w + sx] - lo) / (hi - lo + 1e-8);
                img.put_pixel(ox + x, oy + y, viridis(v));
            }
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_have_the_notebook_layout() {
        let m = crate::model::weights::random(crate::model::Arch::ResNet18, 3, 0, &Device::Cpu).unwrap();
        let f = conv1_filters(&m, 3).unwrap();
        assert_eq!((f.width(), f.height()), (16 * 23 + 2, 4 * 23 + 2));
        let x = Tensor::ones((1, 3, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = layer4_activations(&m, &x, 20).unwrap();
        assert_eq!((a.width(), a.height()), (8 * 22 + 2, 2 * 22 + 2));
        assert_eq!(viridis(0.0), Rgb([68, 1, 84]));
        assert_eq!(viridis(1.0), Rgb([253, 231, 37]));
    }
}
