//! Drawing for the PNGs a run leaves behind (curves, contact sheets): lines,
//! rectangles and text from an 8×8 bitmap font, so no system fonts are needed
//! on a headless GPU box.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Draw `text` with its top-left at (x, y), each font pixel `scale`² pixels.
pub fn text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')) else {
            continue;
        };
        let gx = x + (i as i64) * 8 * scale as i64;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits >> col & 1 == 1 {
                    fill_rect(
                        img,
                        gx + col * scale as i64,
                        y + row as i64 * scale as i64,
                        scale,
                        scale,
                        colour,
                    );
                }
            }
        }
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// A filled rectangle, clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y.max(0)..(y + h as i64).min(img.height() as i64) {
        for xx in x.max(0)..(x + w as i64).min(img.width() as i64) {
            img.put_pixel(xx as u32, yy as u32, colour);
        }
    }
}

/// A line `width` pixels thick between two points.
pub fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), width: u32, colour: Rgb<u8>) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    let half = width as i64 / 2;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        fill_rect(
            img,
            x.round() as i64 - half,
            y.round() as i64 - half,
            width,
            width,
            colour,
        );
    }
}

/// Paste `src` into `dst` at (x, y).
pub fn paste(dst: &mut RgbImage, src: &RgbImage, x: u32, y: u32) {
    image::imageops::replace(dst, src, x as i64, y as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_lines_land_where_asked() {
        let mut img = RgbImage::from_pixel(40, 20, Rgb([255, 255, 255]));
        text(&mut img, 0, 0, "I", 1, Rgb([0, 0, 0]));
        let dark = img.pixels().filter(|p| p.0 == [0, 0, 0]).count();
        assert!(dark > 5 && dark < 40, "{dark}");
        line(&mut img, (0.0, 19.0), (39.0, 19.0), 1, Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(20, 19).0, [255, 0, 0]);
        assert_eq!(text_width("abc", 2), 48);
    }
}
