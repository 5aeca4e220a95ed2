//! Contact sheets: rows of captioned images, one row per class, as the
//! notebook's Grad-CAM figures.

use image::{Rgb, RgbImage};

use super::canvas::{paste, text};

/// One row: a title and its captioned cells.
pub struct SheetRow {
    pub title: String,
    pub cells: Vec<(RgbImage, String)>,
}

const PAD: u32 = 6;
const TITLE: u32 = 16;
const CAPTION: u32 = 14;

/// Lay rows out on white; cells keep their size, rows are as tall as their tallest cell.
pub fn render(rows: &[SheetRow]) -> RgbImage {
    let cell_w = rows
        .iter()
        .flat_map(|r| r.cells.iter().map(|c| c.0.width()))
        .max()
        .unwrap_or(1);
    let cell_h = rows
        .iter()
        .flat_map(|r| r.cells.iter().map(|c| c.0.height()))
        .max()
        .unwrap_or(1);
    let cols = rows.iter().map(|r| r.cells.len()).max().unwrap_or(1).max(1) as u32;
    let row_h = TITLE + cell_h + CAPTION + PAD;
    let w = PAD + cols * (cell_w + PAD);
    let h = PAD + rows.len().max(1) as u32 * row_h;
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let ink = Rgb([30, 30, 30]);
    for (ri, row) in rows.iter().enumerate() {
        let y = PAD + ri as u32 * row_h;
        text(&mut img, PAD as i64, y as i64 + 4, &row.title, 1, ink);
        for (ci, (cell, caption)) in row.cells.iter().enumerate() {
            let x = PAD + ci as u32 * (cell_w + PAD);
            paste(&mut img, cell, x, y + TITLE);
            // Captions are cut to the cell's width rather than spilling over.
            let max_chars = (cell_w / 8) as usize;
            let shown: String = caption.chars().take(max_chars).collect();
            text(&mut img, x as i64, (y + TITLE + cell_h + 3) as i64, &shown, 1, ink);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_size_follows_rows_and_cells() {
        let cell = || (RgbImage::from_pixel(32, 32, Rgb([255, 0, 0])), "x".to_string());
        let rows = vec![
            SheetRow {
                title: "a".into(),
                cells: vec![cell(), cell(), cell()],
            },
            SheetRow {
                title: "b".into(),
                cells: vec![cell()],
            },
        ];
        let img = render(&rows);
        assert_eq!(img.width(), PAD + 3 * (32 + PAD));
        assert_eq!(img.height(), PAD + 2 * (TITLE + 32 + CAPTION + PAD));
        assert_eq!(img.get_pixel(PAD + 1, PAD + TITLE + 1).0, [255, 0, 0]);
    }
}
