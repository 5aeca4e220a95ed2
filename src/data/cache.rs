//! The decode-once cache: the selected images are decoded a single time, in
//! parallel, resized so the shorter side is `image.resize` (antialiased
//! bilinear, as torchvision's `Resize` on PIL images), and kept in memory.
//! Every epoch then crops from memory instead of decoding JPEGs again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image, images::ImageRef};
use image::{GrayImage, RgbImage};
use rayon::prelude::*;

use super::{Dataset, Sample};

/// A decoded, resized image with its label and optional flower mask.
#[derive(Debug, Clone)]
pub struct CachedImage {
    pub rgb: RgbImage,
    pub label: usize,
    /// 255 where the flower is, 0 on background; same size as `rgb`.
    pub mask: Option<GrayImage>,
    /// Where it came from, for captions and reports.
    pub path: PathBuf,
}

/// Both splits of a dataset, decoded, plus what could not be read.
#[derive(Debug, Clone, Default)]
pub struct DecodedSet {
    pub train: Vec<CachedImage>,
    pub test: Vec<CachedImage>,
    /// Files that were skipped, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Resize an RGB image (or a `crop` of it: left, top, width, height) to
/// `width`×`height` with antialiased bilinear filtering.
pub fn resize_rgb(src: &RgbImage, crop: Option<(f64, f64, f64, f64)>, width: u32, height: u32) -> RgbImage {
    resize_raw(
        src.as_raw(),
        src.width(),
        src.height(),
        PixelType::U8x3,
        crop,
        width,
        height,
    )
    .map(|buf| RgbImage::from_raw(width, height, buf).expect("resizer returns a full buffer"))
    .expect("resize of a valid image")
}

/// Grayscale counterpart of [`resize_rgb`], for masks.
pub fn resize_gray(src: &GrayImage, crop: Option<(f64, f64, f64, f64)>, width: u32, height: u32) -> GrayImage {
    resize_raw(
        src.as_raw(),
        src.width(),
        src.height(),
        PixelType::U8,
        crop,
        width,
        height,
    )
    .map(|buf| GrayImage::from_raw(width, height, buf).expect("resizer returns a full buffer"))
    .expect("resize of a valid image")
}

fn resize_raw(
    data: &[u8],
    w: u32,
    h: u32,
    pixel: PixelType,
    crop: Option<(f64, f64, f64, f64)>,
    dw: u32,
    dh: u32,
) -> Result<Vec<u8>, String> {
    let src = ImageRef::new(w, h, data, pixel).map_err(|e| e.to_string())?;
    let mut dst = Image::new(dw, dh, pixel);
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    if let Some((l, t, cw, ch)) = crop {
        options = options.crop(l, t, cw, ch);
    }
    thread_local!(static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new()));
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &options))
        .map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
}

/// The size torchvision's `Resize(short)` gives: shorter side `short`, the
/// other side scaled and truncated.
pub fn resized_dims(w: u32, h: u32, short: u32) -> (u32, u32) {
    if w <= h {
        (short, ((short as u64 * h as u64) / w as u64) as u32)
    } else {
        (((short as u64 * w as u64) / h as u64) as u32, short)
    }
}

/// Decode one image file and resize it.
pub fn decode_resized(path: &Path, short: u32) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let img = image::load_from_memory(&bytes).map_err(|e| format!("cannot decode: {e}"))?;
    let rgb = img.to_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err("image is empty".into());
    }
    let (w, h) = resized_dims(rgb.width(), rgb.height(), short);
    Ok(resize_rgb(&rgb, None, w, h))
}

/// Is this segmentation pixel the official "pure blue" background? The masks
/// are JPEGs, so blue comes with compression noise around it.
pub fn is_background(p: [u8; 3]) -> bool {
    p[2] > 180 && p[0] < 80 && p[1] < 80
}

/// Decode a segmentation image into a flower mask at the cached image's size.
pub fn decode_mask(path: &Path, width: u32, height: u32) -> Result<GrayImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let seg = image::load_from_memory(&bytes)
        .map_err(|e| format!("cannot decode: {e}"))?
        .to_rgb8();
    let flower = GrayImage::from_fn(seg.width(), seg.height(), |x, y| {
        image::Luma([if is_background(seg.get_pixel(x, y).0) { 0 } else { 255 }])
    });
    let mut small = resize_gray(&flower, None, width, height);
    for p in small.pixels_mut() {
        p.0[0] = if p.0[0] >= 128 { 255 } else { 0 };
    }
    Ok(small)
}

fn decode_sample(s: &Sample, short: u32) -> Result<CachedImage, (PathBuf, String)> {
    let rgb = decode_resized(&s.path, short).map_err(|e| (s.path.clone(), e))?;
    // A broken mask loses the focus score for this image, not the image.
    let mask = s
        .mask
        .as_ref()
        .and_then(|m| decode_mask(m, rgb.width(), rgb.height()).ok());
    Ok(CachedImage {
        rgb,
        label: s.label,
        mask,
        path: s.path.clone(),
    })
}

/// Decode one split in parallel, in order; unreadable images are skipped
/// and returned with the reason. `progress(done)` counts finished images.
pub fn decode_samples(
    samples: &[Sample],
    short: u32,
    progress: &(dyn Fn(usize) + Sync),
) -> (Vec<CachedImage>, Vec<(PathBuf, String)>) {
    let done = AtomicUsize::new(0);
    let results: Vec<_> = samples
        .par_iter()
        .map(|s| {
            let r = decode_sample(s, short);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            r
        })
        .collect();
    let mut images = Vec::with_capacity(results.len());
    let mut skipped = Vec::new();
    for r in results {
        match r {
            Ok(img) => images.push(img),
            Err(skip) => {
                tracing::warn!("skipping {}: {}", skip.0.display(), skip.1);
                skipped.push(skip);
            }
        }
    }
    (images, skipped)
}

/// Decode both splits in parallel. `progress(done, total)` is called as
/// images finish (from worker threads). Unreadable images are skipped and
/// listed; an empty class afterwards is an error.
pub fn decode_dataset(
    ds: &Dataset,
    short: u32,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<DecodedSet, String> {
    let total = ds.train.len() + ds.test.len();
    let (train, mut skipped) = decode_samples(&ds.train, short, &|done| progress(done, total));
    let offset = ds.train.len();
    let (test, skipped_test) = decode_samples(&ds.test, short, &|done| progress(offset + done, total));
    skipped.extend(skipped_test);
    let out = DecodedSet { train, test, skipped };
    for (i, class) in ds.classes.iter().enumerate() {
        for (split, images) in [("training", &out.train), ("test", &out.test)] {
            if !images.iter().any(|im| im.label == i) {
                return Err(format!(
                    "{}: class {:?} has no readable {split} image ({} files skipped)",
                    ds.root.display(),
                    class.name,
                    out.skipped.len()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_torchvision_dims() {
        assert_eq!(resized_dims(500, 667, 256), (256, 341));
        assert_eq!(resized_dims(667, 500, 256), (341, 256));
        assert_eq!(resized_dims(300, 300, 256), (256, 256));
    }

    #[test]
    fn resize_of_flat_colour_is_flat() {
        let img = RgbImage::from_pixel(97, 61, image::Rgb([10, 200, 30]));
        let out = resize_rgb(&img, Some((3.0, 2.0, 50.0, 40.0)), 32, 32);
        assert!(out.pixels().all(|p| p.0 == [10, 200, 30]));
    }

    #[test]
    fn corrupt_and_missing_images_are_skipped_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3])).save(&good).unwrap();
        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let truncated = dir.path().join("trunc.png");
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let s = |p: &Path, label| Sample {
            path: p.to_owned(),
            label,
            mask: None,
        };
        let ds = Dataset {
            root: dir.path().to_owned(),
            format: "image_folder",
            classes: vec![super::super::ClassInfo {
                name: "a".into(),
                source_label: None,
            }],
            train: vec![s(&good, 0), s(&bad, 0), s(&dir.path().join("missing.jpg"), 0)],
            test: vec![s(&good, 0), s(&truncated, 0)],
        };
        let calls = AtomicUsize::new(0);
        let set = decode_dataset(&ds, 16, &|_, total| {
            assert_eq!(total, 5);
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(calls.into_inner(), 5);
        assert_eq!((set.train.len(), set.test.len(), set.skipped.len()), (1, 1, 3));
        assert_eq!((set.train[0].rgb.width(), set.train[0].rgb.height()), (21, 16));
        let listed: Vec<_> = set
            .skipped
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert!(listed.contains(&"bad.jpg") && listed.contains(&"missing.jpg") && listed.contains(&"trunc.png"));

        let only_bad = Dataset {
            train: vec![s(&bad, 0)],
            ..ds
        };
        let e = decode_dataset(&only_bad, 16, &|_, _| {}).unwrap_err();
        assert!(e.contains("no readable training image"), "{e}");
    }
}
