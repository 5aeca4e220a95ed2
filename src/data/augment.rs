//! The notebook's torchvision transforms, on the decode-once cache:
//! train = RandomResizedCrop + horizontal flip + ColorJitter (random order) +
//! ImageNet normalisation; test = centre crop + normalisation. Each image gets
//! its own RNG derived from (seed, epoch, position), so batches are the same
//! whatever the thread count.

use candle_core::{Device, Tensor};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::cache::{CachedImage, resize_rgb};
use crate::config::{AugmentConfig, ImageConfig};

/// A crop rectangle in source pixels, as torchvision's `(i, j, h, w)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: u32,
    pub left: u32,
    pub height: u32,
    pub width: u32,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area
/// and log-uniform aspect ratio, then a centre crop clamped to the ratio range.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> CropBox {
    let area = width as f64 * height as f64;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0]..=scale[1]);
        let aspect = if log_lo < log_hi {
            rng.random_range(log_lo..log_hi)
        } else {
            log_lo
        }
        .exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio[0] {
        (width, ((width as f64 / ratio[0]).round() as u32).min(height))
    } else if in_ratio > ratio[1] {
        (((height as f64 * ratio[1]).round() as u32).min(width), height)
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// torchvision's `CenterCrop` offsets: `round((H - size) / 2)`.
pub fn center_crop_box(width: u32, height: u32, size: u32) -> CropBox {
    let off = |full: u32| (((full.saturating_sub(size)) as f64) / 2.0).round() as u32;
    CropBox {
        top: off(height),
        left: off(width),
        height: size.min(height),
        width: size.min(width),
    }
}

/// Turns cached images into normalised CHW float crops.
#[derive(Debug, Clone)]
pub struct Augmenter {
    pub size: u32,
    mean: [f32; 3],
    std: [f32; 3],
    aug: AugmentConfig,
}

/// ITU-R 601 luma, as PIL's `convert("L")` that ColorJitter blends towards.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

impl Augmenter {
    pub fn new(image: &ImageConfig, aug: &AugmentConfig) -> Self {
        Augmenter {
            size: image.size,
            mean: image.mean,
            std: image.std,
            aug: aug.clone(),
        }
    }

    /// Values per image in the output (3 × size × size).
    pub fn image_len(&self) -> usize {
        3 * (self.size as usize).pow(2)
    }

    /// The test transform: centre crop, normalise, into `out` (CHW).
    pub fn test_into(&self, img: &RgbImage, out: &mut [f32]) {
        let b = center_crop_box(img.width(), img.height(), self.size);
        let crop = if (b.width, b.height) == (self.size, self.size) {
            image::imageops::crop_imm(img, b.left, b.top, b.width, b.height).to_image()
        } else {
            // Smaller than the crop (only with odd configs): scale up instead of padding.
            resize_rgb(img, None, self.size, self.size)
        };
        let pixels: Vec<f32> = crop.as_raw().iter().map(|&v| v as f32).collect();
        self.normalise_into(&pixels, out);
    }

    /// The train transform with the given RNG, into `out` (CHW).
    pub fn train_into(&self, img: &RgbImage, rng: &mut impl Rng, out: &mut [f32]) {
        let s = self.size;
        let b = random_resized_crop_box(img.width(), img.height(), self.aug.scale, self.aug.ratio, rng);
        let crop = (b.left as f64, b.top as f64, b.width as f64, b.height as f64);
        let mut resized = resize_rgb(img, Some(crop), s, s);
        if rng.random_bool(self.aug.flip) {
            image::imageops::flip_horizontal_in_place(&mut resized);
        }
        let mut px: Vec<f32> = resized.as_raw().iter().map(|&v| v as f32).collect();
        self.color_jitter(&mut px, rng);
        self.normalise_into(&px, out);
    }

    /// ColorJitter(brightness, contrast, saturation) in torchvision's random order.
    fn color_jitter(&self, px: &mut [f32], rng: &mut impl Rng) {
        let factor = |rng: &mut dyn rand::RngCore, x: f32| {
            if x > 0.0 {
                rng.random_range(1.0 - x..=1.0 + x)
            } else {
                1.0
            }
        };
        let mut order = [0usize, 1, 2];
        order.shuffle(rng);
        // torchvision draws all factors before applying any.
        let f = [
            factor(rng, self.aug.brightness),
            factor(rng, self.aug.contrast),
            factor(rng, self.aug.saturation),
        ];
        for op in order {
            let k = f[op];
            if k == 1.0 {
                continue;
            }
            match op {
                0 => px.iter_mut().for_each(|v| *v = (*v * k).clamp(0.0, 255.0)),
                1 => {
                    let n = (px.len() / 3) as f32;
                    let mean = px.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).sum::<f32>() / n;
                    let add = mean * (1.0 - k);
                    px.iter_mut().for_each(|v| *v = (*v * k + add).clamp(0.0, 255.0));
                }
                _ => px.chunks_exact_mut(3).for_each(|p| {
                    let add = luma(p[0], p[1], p[2]) * (1.0 - k);
                    p.iter_mut().for_each(|v| *v = (*v * k + add).clamp(0.0, 255.0));
                }),
            }
        }
    }

    /// HWC 0..255 → CHW normalised.
    fn normalise_into(&self, hwc: &[f32], out: &mut [f32]) {
        let plane = (self.size as usize).pow(2);
        for c in 0..3 {
            let (scale, shift) = (1.0 / (255.0 * self.std[c]), self.mean[c] / self.std[c]);
            for (o, p) in out[c * plane..(c + 1) * plane].iter_mut().zip(hwc.chunks_exact(3)) {
                *o = p[c] * scale - shift;
            }
        }
    }

    /// A batch as an NCHW f32 tensor. `train` picks the transform; each image's
    /// randomness comes from `(seed, epoch, its position in the epoch)`.
    pub fn batch(
        &self,
        images: &[&CachedImage],
        train: bool,
        seed: u64,
        epoch: u64,
        first: u64,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let len = self.image_len();
        let mut data = vec![0f32; images.len() * len];
        data.par_chunks_mut(len)
            .zip(images.par_iter())
            .enumerate()
            .for_each(|(i, (out, img))| {
                if train {
                    let mut rng = sample_rng(seed, epoch, first + i as u64);
                    self.train_into(&img.rgb, &mut rng, out);
                } else {
                    self.test_into(&img.rgb, out);
                }
            });
        let s = self.size as usize;
        Tensor::from_vec(data, (images.len(), 3, s, s), device)
    }
}

/// The RNG for one image of one epoch, independent of threads and batching.
pub fn sample_rng(seed: u64, epoch: u64, position: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f10e_u64.rotate_left(17));
    rng.set_stream(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ position);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        RgbImage::from_fn(w, h, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]))
    }

    #[test]
    fn crop_area_and_aspect_stay_in_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (w, h) in [(256, 341), (341, 256), (256, 256), (300, 1000)] {
            for _ in 0..2000 {
                let b = random_resized_crop_box(w, h, [0.8, 1.0], [0.75, 4.0 / 3.0], &mut rng);
                assert!(b.left + b.width <= w && b.top + b.height <= h);
                let area = (b.width * b.height) as f64 / (w * h) as f64;
                let aspect = b.width as f64 / b.height as f64;
                // Rounding to whole pixels moves area and ratio by a pixel's worth.
                assert!(
                    (0.79..=1.0).contains(&area) || (w, h) == (300, 1000),
                    "area {area} for {w}x{h}"
                );
                assert!((0.74..=1.35).contains(&aspect), "aspect {aspect} for {w}x{h}");
            }
        }
    }

    #[test]
    fn impossible_ratio_falls_back_to_centre_crop() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // A 1:4 strip cannot hold a crop of area ≥ 0.8 with ratio ≥ 3/4.
        let b = random_resized_crop_box(100, 400, [0.8, 1.0], [0.75, 4.0 / 3.0], &mut rng);
        assert_eq!(
            b,
            CropBox {
                top: 133,
                left: 0,
                height: 133,
                width: 100
            }
        );
    }

    #[test]
    fn centre_crop_matches_torchvision_offsets() {
        assert_eq!(
            center_crop_box(341, 256, 224),
            CropBox {
                top: 16,
                left: 59,
                height: 224,
                width: 224
            }
        );
        assert_eq!(
            center_crop_box(256, 257, 224),
            CropBox {
                top: 17,
                left: 16,
                height: 224,
                width: 224
            }
        );
    }

    #[test]
    fn test_transform_normalises_exactly() {
        let c = Config::defaults();
        let aug = Augmenter::new(
            &ImageConfig {
                size: 4,
                ..c.image.clone()
            },
            &c.augment,
        );
        let img = RgbImage::from_fn(6, 5, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 255]));
        let mut out = vec![0f32; aug.image_len()];
        aug.test_into(&img, &mut out);
        // Crop starts at (1, 0) (round(0.5) = 0 for rows, 1 for columns).
        let r = (40.0 / 255.0 - 0.485) / 0.229;
        assert!((out[0] - r).abs() < 1e-6, "{}", out[0]);
        let b = (1.0 - 0.406) / 0.225;
        assert!((out[2 * 16 + 5] - b).abs() < 1e-6);
    }

    #[test]
    fn train_batches_are_deterministic_and_vary() {
        let c = Config::defaults();
        let aug = Augmenter::new(
            &ImageConfig {
                size: 32,
                resize: 40,
                ..c.image.clone()
            },
            &c.augment,
        );
        let imgs: Vec<CachedImage> = (0..5)
            .map(|i| CachedImage {
                rgb: noise(40, 53, i),
                label: 0,
                mask: None,
                path: "x".into(),
            })
            .collect();
        let refs: Vec<&CachedImage> = imgs.iter().collect();
        let a = aug
            .batch(&refs, true, 7, 1, 0, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = aug
            .batch(&refs, true, 7, 1, 0, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let other = aug
            .batch(&refs, true, 7, 2, 0, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_ne!(a, other);
        // One image alone gets the same crop as inside the batch (position 3).
        let solo = aug
            .batch(&refs[3..4], true, 7, 1, 3, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&a[3 * aug.image_len()..4 * aug.image_len()], &solo[..]);
        let t = aug.batch(&refs, false, 7, 1, 0, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[5, 3, 32, 32]);
    }

    #[test]
    fn jitter_keeps_gray_gray_and_in_range() {
        let c = Config::defaults();
        let aug = Augmenter::new(
            &ImageConfig {
                size: 8,
                resize: 8,
                ..c.image.clone()
            },
            &AugmentConfig {
                brightness: 0.9,
                contrast: 0.9,
                saturation: 0.9,
                ..c.augment.clone()
            },
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let mut px = vec![128f32; 8 * 8 * 3];
            px[0] = 250.0;
            aug.color_jitter(&mut px, &mut rng);
            assert!(px.iter().all(|v| (0.0..=255.0).contains(v)));
            // Pixels that were gray stay gray: saturation and contrast act on all channels alike.
            assert!((px[3] - px[4]).abs() < 1e-3 && (px[4] - px[5]).abs() < 1e-3);
        }
    }
}
