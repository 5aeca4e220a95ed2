//! Colormaps identical to matplotlib's (`jet`, the notebook's, and `turbo`),
//! and the notebook's 50/50 overlay of heatmap over image.

use image::{Rgb, RgbImage};

/// matplotlib's `jet` segment data: (x, y) breakpoints per channel.
const JET: [&[(f32, f32)]; 3] = [
    &[(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)],
    &[
        (0.0, 0.0),
        (0.125, 0.0),
        (0.375, 1.0),
        (0.64, 1.0),
        (0.91, 0.0),
        (1.0, 0.0),
    ],
    &[(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)],
];

fn piecewise(points: &[(f32, f32)], x: f32) -> f32 {
    for w in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            return if x1 > x0 {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            } else {
                y1
            };
        }
    }
    points.last().map(|p| p.1).unwrap_or(0.0)
}

/// A 256-entry lookup table, indexed as matplotlib does (`int(x * 256)`, clipped).
#[derive(Debug, Clone)]
pub struct Colormap {
    lut: Vec<[f32; 3]>,
}

impl Colormap {
    /// matplotlib's `jet`.
    pub fn jet() -> Colormap {
        let lut = (0..256).map(|i| {
            let x = i as f32 / 255.0;
            [piecewise(JET[0], x), piecewise(JET[1], x), piecewise(JET[2], x)]
        });
        Colormap { lut: lut.collect() }
    }

    /// Google's `turbo` (matplotlib ships it), from its published polynomial fit.
    pub fn turbo() -> Colormap {
        let poly = |x: f32, c: [f32; 6]| c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * c[5]))));
        let lut = (0..256).map(|i| {
            let x = i as f32 / 255.0;
            [
                poly(
                    x,
                    [0.135_721_38, 4.615_392_6, -42.660_32, 132.131_08, -152.942_4, 59.286_38],
                )
                .clamp(0.0, 1.0),
                poly(
                    x,
                    [
                        0.091_402_61,
                        2.194_188_4,
                        4.842_966_6,
                        -14.185_033,
                        4.277_298_6,
                        2.829_566,
                    ],
                )
                .clamp(0.0, 1.0),
                poly(
                    x,
                    [0.106_673_3, 12.641_946, -60.582_05, 110.362_77, -89.903_11, 27.348_25],
                )
                .clamp(0.0, 1.0),
            ]
        });
        Colormap { lut: lut.collect() }
    }

    /// By configuration name.
    pub fn by_name(name: &str) -> Colormap {
        if name == "turbo" {
            Colormap::turbo()
        } else {
            Colormap::jet()
        }
    }

    /// Colour of `x` in [0, 1], channels in [0, 1].
    pub fn rgb(&self, x: f32) -> [f32; 3] {
        let i = ((x * 256.0) as i64).clamp(0, 255) as usize;
        self.lut[i]
    }
}

/// The notebook's overlay: `0.5 * image + 0.5 * heatmap`, with `cam` in [0, 1]
/// at the image's size.
pub fn overlay(image: &RgbImage, cam: &[f32], cmap: &Colormap) -> RgbImage {
    let w = image.width();
    RgbImage::from_fn(w, image.height(), |x, y| {
        let p = image.get_pixel(x, y).0;
        let c = cmap.rgb(cam[(y * w + x) as usize]);
        let mix = |i: usize| ((0.5 * p[i] as f32 / 255.0 + 0.5 * c[i]).clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([mix(0), mix(1), mix(2)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_matches_matplotlib() {
        // matplotlib.colormaps["jet"](x)[:3] for these x.
        let j = Colormap::jet();
        let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-3);
        assert!(close(j.rgb(0.0), [0.0, 0.0, 0.5]));
        assert!(close(j.rgb(1.0), [0.5, 0.0, 0.0]));
        assert!(close(j.rgb(0.5), [0.490_196, 1.0, 0.477_546]), "{:?}", j.rgb(0.5));
        assert!(close(j.rgb(0.25), [0.0, 0.503_922, 1.0]), "{:?}", j.rgb(0.25));
    }

    #[test]
    fn overlay_png_keeps_the_colormap_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        let cam = [0.0, 0.25, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0];
        let path = dir.path().join("o.png");
        crate::report::write_png(&path, &overlay(&img, &cam, &Colormap::jet())).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (4, 2));
        // Half of jet(1.0) = (0.5, 0, 0) over black is (64, 0, 0); jet(0.25) is (0, 0.504, 1).
        assert_eq!(back.get_pixel(3, 0).0, [64, 0, 0]);
        assert_eq!(back.get_pixel(1, 0).0, [0, 64, 128]);
    }

    #[test]
    fn overlay_blends_half_and_half() {
        let img = RgbImage::from_pixel(2, 1, Rgb([255, 0, 0]));
        let out = overlay(&img, &[1.0, 0.0], &Colormap::jet());
        assert_eq!(out.get_pixel(0, 0).0, [191, 0, 0]);
        assert_eq!(out.get_pixel(1, 0).0, [128, 0, 64]);
    }
}
