//! Synthetic Flowers102-style datasets: procedurally drawn flowers, one
//! species per class (petal count, petal shape and colours), on textured
//! backgrounds, at random places, scales and rotations, written in the
//! official layout with `.mat` files and `segmim/` masks. The demo and the
//! tests run on these; `--shortcut CLASS` plants a fixed-position mark on one
//! class so Grad-CAM has a shortcut to find.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::official::{CLASS_NAMES, IMAGES_PER_CLASS};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// 0-indexed official labels, one species each.
    pub labels: Vec<usize>,
    /// Images per class; `None` mirrors the official split sizes
    /// (10 train + 10 val + the official test count).
    pub images_per_class: Option<usize>,
    /// Width of every image in pixels; heights vary with the aspect ratio.
    pub size: u32,
    /// Position in `labels` of the class that gets the planted mark.
    pub shortcut: Option<usize>,
    pub seed: u64,
    /// Draw every class with the first species, so the planted mark is the
    /// only thing that tells classes apart (a controlled shortcut experiment).
    pub same_species: bool,
}

/// What was written, for messages and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthSummary {
    pub root: PathBuf,
    pub images: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// How one species looks.
#[derive(Debug, Clone)]
struct Species {
    petals: usize,
    /// Petal half-width relative to its length.
    width: f32,
    /// Superellipse exponent: 2 = oval, < 2 = pointed, > 2 = blunt.
    shape: f32,
    petal: [f32; 3],
    tip: [f32; 3],
    centre: [f32; 3],
    centre_radius: f32,
    /// Two rings of petals (composite flowers).
    double: bool,
}

/// Eight hand-made, clearly distinct species; more classes reuse them with
/// shifted colours and counts so every class still differs.
fn species(index: usize) -> Species {
    let base = [
        Species {
            petals: 5,
            width: 0.45,
            shape: 2.0,
            petal: [240., 150., 190.],
            tip: [255., 220., 235.],
            centre: [240., 220., 60.],
            centre_radius: 0.18,
            double: false,
        },
        Species {
            petals: 28,
            width: 0.10,
            shape: 1.2,
            petal: [90., 110., 220.],
            tip: [150., 170., 255.],
            centre: [70., 80., 180.],
            centre_radius: 0.45,
            double: true,
        },
        Species {
            petals: 13,
            width: 0.16,
            shape: 2.5,
            petal: [200., 70., 170.],
            tip: [230., 120., 200.],
            centre: [150., 70., 20.],
            centre_radius: 0.30,
            double: false,
        },
        Species {
            petals: 5,
            width: 0.38,
            shape: 1.4,
            petal: [30., 60., 200.],
            tip: [60., 110., 240.],
            centre: [230., 230., 240.],
            centre_radius: 0.12,
            double: false,
        },
        Species {
            petals: 5,
            width: 0.55,
            shape: 3.0,
            petal: [120., 40., 160.],
            tip: [250., 230., 80.],
            centre: [20., 20., 30.],
            centre_radius: 0.10,
            double: false,
        },
        Species {
            petals: 14,
            width: 0.17,
            shape: 2.0,
            petal: [250., 190., 20.],
            tip: [255., 220., 60.],
            centre: [60., 30., 15.],
            centre_radius: 0.32,
            double: false,
        },
        Species {
            petals: 3,
            width: 0.14,
            shape: 1.0,
            petal: [250., 120., 20.],
            tip: [60., 70., 220.],
            centre: [40., 120., 60.],
            centre_radius: 0.08,
            double: false,
        },
        Species {
            petals: 6,
            width: 0.30,
            shape: 1.6,
            petal: [170., 130., 230.],
            tip: [235., 225., 250.],
            centre: [240., 240., 170.],
            centre_radius: 0.15,
            double: false,
        },
    ];
    let mut s = base[index % base.len()].clone();
    let round = index / base.len();
    if round > 0 {
        // Later rounds rotate the colour channels and change the petal count.
        let rot = |c: [f32; 3]| [c[(round) % 3], c[(round + 1) % 3], c[(round + 2) % 3]];
        s.petal = rot(s.petal);
        s.tip = rot(s.tip);
        s.centre = rot(s.centre);
        s.petals += 2 * round;
    }
    s
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Smooth random field in [0, 1] (bilinear value noise on a coarse grid).
fn value_noise(w: u32, h: u32, cells: usize, rng: &mut impl Rng) -> Vec<f32> {
    let grid: Vec<f32> = (0..(cells + 1) * (cells + 1)).map(|_| rng.random()).collect();
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let gx = x as f32 / w as f32 * cells as f32;
            let gy = y as f32 / h as f32 * cells as f32;
            let (ix, iy) = (gx as usize, gy as usize);
            let (fx, fy) = (gx - ix as f32, gy - iy as f32);
            let at = |i: usize, j: usize| grid[j * (cells + 1) + i];
            let top = at(ix, iy) * (1.0 - fx) + at(ix + 1, iy) * fx;
            let bottom = at(ix, iy + 1) * (1.0 - fx) + at(ix + 1, iy + 1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// A textured background: foliage, soil or sky tones with blades of grass.
fn background(w: u32, h: u32, rng: &mut impl Rng) -> RgbImage {
    let palettes = [
        ([40., 90., 35.], [110., 160., 70.]),
        ([70., 55., 40.], [140., 115., 80.]),
        ([120., 160., 210.], [200., 220., 240.]),
        ([30., 60., 30.], [80., 120., 50.]),
        ([90., 100., 80.], [170., 175., 150.]),
    ];
    let (dark, light) = palettes[rng.random_range(0..palettes.len())];
    let coarse = value_noise(w, h, rng.random_range(2..6), rng);
    let fine = value_noise(w, h, rng.random_range(12..24), rng);
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let t = (0.7 * coarse[i] + 0.3 * fine[i]).clamp(0.0, 1.0);
        let c = lerp3(dark, light, t);
        Rgb([c[0] as u8, c[1] as u8, c[2] as u8])
    });
    // Blades of grass or twigs: thin random strokes.
    for _ in 0..rng.random_range(10..40) {
        let (mut x, mut y) = (rng.random_range(0.0..w as f32), rng.random_range(0.0..h as f32));
        let angle: f32 = rng.random_range(-2.0..-1.1);
        let len = rng.random_range(0.05..0.25) * h as f32;
        let shade = rng.random_range(0.6..1.3);
        let c = lerp3(dark, light, rng.random::<f32>());
        for _ in 0..len as usize {
            if x >= 0.0 && y >= 0.0 && (x as u32) < w && (y as u32) < h {
                img.put_pixel(
                    x as u32,
                    y as u32,
                    Rgb([
                        (c[0] * shade).min(255.) as u8,
                        (c[1] * shade).min(255.) as u8,
                        (c[2] * shade).min(255.) as u8,
                    ]),
                );
            }
            x += angle.cos();
            y += angle.sin();
        }
    }
    img
}

/// Draw one flower; returns the mask of pixels it covers.
fn draw_flower(img: &mut RgbImage, s: &Species, rng: &mut impl Rng) -> Vec<bool> {
    let (w, h) = img.dimensions();
    let short = w.min(h) as f32;
    let radius = short * rng.random_range(0.22..0.40);
    let cx = rng.random_range(radius * 0.8..w as f32 - radius * 0.8);
    let cy = rng.random_range(radius * 0.8..h as f32 - radius * 0.8);
    let rotation: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let jitter = rng.random_range(0.85..1.15f32);
    let petal_len = radius;
    let mut mask = vec![false; (w * h) as usize];
    let rings: &[(f32, f32)] = if s.double {
        &[(1.0, 0.0), (0.75, 0.5)]
    } else {
        &[(1.0, 0.0)]
    };
    let x0 = (cx - radius).max(0.0) as u32;
    let x1 = ((cx + radius).ceil() as u32).min(w);
    let y0 = (cy - radius).max(0.0) as u32;
    let y1 = ((cy + radius).ceil() as u32).min(h);
    let step = std::f32::consts::TAU / s.petals as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            let r = (dx * dx + dy * dy).sqrt();
            if r > radius {
                continue;
            }
            let mut colour = None;
            if r < s.centre_radius * radius {
                let t = r / (s.centre_radius * radius);
                colour = Some(lerp3(
                    s.centre,
                    [s.centre[0] * 0.6, s.centre[1] * 0.6, s.centre[2] * 0.6],
                    t,
                ));
            } else {
                for &(scale, offset) in rings {
                    let len = petal_len * scale;
                    let phi = dy.atan2(dx) - rotation + offset * step;
                    // Angle to the nearest petal axis.
                    let delta = phi - step * (phi / step).round();
                    let (u, v) = (r * delta.cos(), r * delta.sin());
                    let a = len * 0.5;
                    let b = len * s.width * jitter;
                    let d = ((u - a) / a).abs().powf(s.shape) + (v / b).abs().powf(s.shape);
                    if d <= 1.0 {
                        let t = (u / len).clamp(0.0, 1.0);
                        let vein = 1.0 - 0.12 * (1.0 - (v / b).abs()).powi(8);
                        let c = lerp3(s.petal, s.tip, t * t);
                        colour = Some([c[0] * vein, c[1] * vein, c[2] * vein]);
                        break;
                    }
                }
            }
            if let Some(c) = colour {
                img.put_pixel(
                    x,
                    y,
                    Rgb([
                        c[0].clamp(0., 255.) as u8,
                        c[1].clamp(0., 255.) as u8,
                        c[2].clamp(0., 255.) as u8,
                    ]),
                );
                mask[(y * w + x) as usize] = true;
            }
        }
    }
    mask
}

/// Where the planted shortcut goes: a square of a seventh of the short side,
/// a fifth of the way in from the top-left corner, so that the test-time
/// centre crop (which can cut 17% off a long side) always keeps it.
pub fn shortcut_box(width: u32, height: u32) -> (u32, u32, u32) {
    let side = (width.min(height) / 7).max(5);
    (width / 5, height / 5, side)
}

/// The planted shortcut: a small white-bordered red square at a fixed place.
/// It is not flower, so the mask calls it background.
fn plant_shortcut(img: &mut RgbImage, mask: &mut [bool]) {
    let (x0, y0, side) = shortcut_box(img.width(), img.height());
    let w = img.width();
    for y in y0..y0 + side {
        for x in x0..x0 + side {
            let edge = x < x0 + 2 || y < y0 + 2 || x + 2 >= x0 + side || y + 2 >= y0 + side;
            img.put_pixel(x, y, if edge { Rgb([255, 255, 255]) } else { Rgb([230, 20, 40]) });
            mask[(y * w + x) as usize] = false;
        }
    }
}

/// Draw image number `id` of class position `class`: the photo and its
/// segmentation (flower kept, background pure blue).
pub fn render(spec: &SynthSpec, class: usize, id: usize) -> (RgbImage, RgbImage) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_mul(0x9E37_79B9).wrapping_add(id as u64));
    let aspect = [0.75f32, 1.0, 1.25, 1.33][rng.random_range(0..4)];
    let (w, h) = (spec.size, ((spec.size as f32) * aspect).round() as u32);
    let mut img = background(w, h, &mut rng);
    let look = if spec.same_species { 0 } else { class };
    let mut mask = draw_flower(&mut img, &species(look), &mut rng);
    if spec.shortcut == Some(class) {
        plant_shortcut(&mut img, &mut mask);
    }
    let seg = RgbImage::from_fn(w, h, |x, y| {
        if mask[(y * w + x) as usize] {
            *img.get_pixel(x, y)
        } else {
            Rgb([0, 0, 255])
        }
    });
    (img, seg)
}

/// How many images each split gets for one class.
fn split_sizes(spec: &SynthSpec, label: usize) -> (usize, usize, usize) {
    match spec.images_per_class {
        None => (10, 10, IMAGES_PER_CLASS[label] - 20),
        Some(n) => {
            let n = n.max(3);
            let q = (n / 4).max(1);
            (q, q, n - 2 * q)
        }
    }
}

fn save_jpeg(path: &Path, img: &RgbImage) -> std::io::Result<()> {
    crate::fsutil::write_atomic_with(path, |w| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(w, 92)
            .encode_image(img)
            .map_err(std::io::Error::other)
    })
}

/// Write a dataset under `out` (official layout). `progress(done, total)`.
pub fn write(out: &Path, spec: &SynthSpec, progress: &(dyn Fn(usize, usize) + Sync)) -> std::io::Result<SynthSummary> {
    if let Some(bad) = spec.labels.iter().find(|l| **l >= CLASS_NAMES.len()) {
        return Err(std::io::Error::other(format!("label {bad} is not a Flowers102 class")));
    }
    std::fs::create_dir_all(out.join("jpg"))?;
    std::fs::create_dir_all(out.join("segmim"))?;
    // Image ids interleave classes, as the official files do, with each
    // class's ids split into train / val / test.
    let mut jobs = Vec::new(); // (id, class position, split)
    let (mut trn, mut val, mut tst) = (Vec::new(), Vec::new(), Vec::new());
    let mut per_class: Vec<(usize, usize, usize)> = spec.labels.iter().map(|&l| split_sizes(spec, l)).collect();
    let mut next_id = 1usize;
    loop {
        let mut any = false;
        for (class, left) in per_class.iter_mut().enumerate() {
            let split = if left.0 > 0 {
                left.0 -= 1;
                0
            } else if left.1 > 0 {
                left.1 -= 1;
                1
            } else if left.2 > 0 {
                left.2 -= 1;
                2
            } else {
                continue;
            };
            any = true;
            jobs.push((next_id, class));
            [&mut trn, &mut val, &mut tst][split].push(next_id as f64);
            next_id += 1;
        }
        if !any {
            break;
        }
    }
    let total = jobs.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    jobs.par_iter().try_for_each(|&(id, class)| -> std::io::Result<()> {
        let (img, seg) = render(spec, class, id);
        save_jpeg(&out.join("jpg").join(format!("image_{id:05}.jpg")), &img)?;
        save_jpeg(&out.join("segmim").join(format!("segmim_{id:05}.jpg")), &seg)?;
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
        Ok(())
    })?;
    let labels: Vec<f64> = jobs.iter().map(|&(_, class)| (spec.labels[class] + 1) as f64).collect();
    super::matv5::write_vectors(&out.join("imagelabels.mat"), &[("labels", &labels)])?;
    super::matv5::write_vectors(
        &out.join("setid.mat"),
        &[("trnid", &trn), ("valid", &val), ("tstid", &tst)],
    )?;
    let info = serde_json::json!({
        "generator": "flowercam synth",
        "seed": spec.seed,
        "classes": spec.labels.iter().map(|&l| CLASS_NAMES[l]).collect::<Vec<_>>(),
        "shortcut": spec.shortcut.map(|c| CLASS_NAMES[spec.labels[c]]),
    });
    crate::fsutil::write_atomic(
        &out.join("flowercam-synth.json"),
        serde_json::to_string_pretty(&info).unwrap().as_bytes(),
    )?;
    Ok(SynthSummary {
        root: out.to_owned(),
        images: total,
        train: trn.len(),
        val: val.len(),
        test: tst.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SynthSpec {
        SynthSpec {
            labels: vec![0, 9, 16],
            images_per_class: Some(8),
            size: 64,
            shortcut: Some(1),
            seed: 5,
            same_species: false,
        }
    }

    #[test]
    fn rendering_is_deterministic_and_masks_match() {
        let s = spec();
        let (a, sa) = render(&s, 0, 3);
        let (b, _) = render(&s, 0, 3);
        assert_eq!(a, b);
        let (c, _) = render(&SynthSpec { seed: 6, ..s.clone() }, 0, 3);
        assert_ne!(a, c);
        let flower = sa.pixels().filter(|p| p.0 != [0, 0, 255]).count();
        let share = flower as f64 / (sa.width() * sa.height()) as f64;
        assert!((0.03..0.6).contains(&share), "flower covers {share}");
    }

    #[test]
    fn shortcut_mark_sits_top_left_on_its_class_only() {
        let s = spec();
        let (marked, seg) = render(&s, 1, 10);
        let (x0, y0, side) = shortcut_box(marked.width(), marked.height());
        let (cx, cy) = (x0 + side / 2, y0 + side / 2);
        assert_eq!(marked.get_pixel(cx, cy).0, [230, 20, 40]);
        // The mark is not flower: the mask calls it background.
        assert_eq!(seg.get_pixel(cx, cy).0, [0, 0, 255]);
        let (plain, _) = render(&s, 0, 10);
        assert_ne!(plain.get_pixel(cx, cy).0, [230, 20, 40]);
        // The test-time centre crop (resize 256, crop 224) keeps the whole mark.
        for (w, h) in [(marked.width(), marked.height()), (300, 400), (400, 300)] {
            let (x0, y0, side) = shortcut_box(w, h);
            let (rw, rh) = crate::data::cache::resized_dims(w, h, 256);
            let b = crate::data::augment::center_crop_box(rw, rh, 224);
            let (sx, sy) = (rw as f64 / w as f64, rh as f64 / h as f64);
            assert!(
                x0 as f64 * sx >= b.left as f64 && y0 as f64 * sy >= b.top as f64,
                "{w}x{h}"
            );
            assert!(((x0 + side) as f64 * sx) <= (b.left + b.width) as f64);
        }
    }

    #[test]
    fn default_sizes_mirror_the_official_splits() {
        let s = SynthSpec {
            images_per_class: None,
            ..spec()
        };
        assert_eq!(split_sizes(&s, 0), (10, 10, 20));
        assert_eq!(split_sizes(&s, 9), (10, 10, 25));
        assert_eq!(split_sizes(&spec(), 0), (2, 2, 4));
    }
}
