//! The training curves PNG: accuracy and loss per epoch, train and test, for
//! both phases on one pair of axes (the notebook's figures, side by side).

use image::{Rgb, RgbImage};

use super::EpochRow;
use super::canvas::{fill_rect, line, text, text_width};

/// One line on a panel.
struct Series<'a> {
    label: &'a str,
    colour: Rgb<u8>,
    values: Vec<f64>,
}

const FE_TRAIN: Rgb<u8> = Rgb([140, 170, 230]);
const FE_TEST: Rgb<u8> = Rgb([30, 80, 200]);
const FT_TRAIN: Rgb<u8> = Rgb([240, 160, 140]);
const FT_TEST: Rgb<u8> = Rgb([200, 40, 30]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Render both phases' curves. Either phase may be empty.
pub fn render(fe: &[EpochRow], ft: &[EpochRow]) -> RgbImage {
    let (w, h) = (1100u32, 460u32);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    // Train and test of both phases, for one quantity.
    let series = |train: fn(&EpochRow) -> f64, test: fn(&EpochRow) -> f64| {
        vec![
            Series {
                label: "FE train",
                colour: FE_TRAIN,
                values: fe.iter().map(train).collect(),
            },
            Series {
                label: "FE test",
                colour: FE_TEST,
                values: fe.iter().map(test).collect(),
            },
            Series {
                label: "FT train",
                colour: FT_TRAIN,
                values: ft.iter().map(train).collect(),
            },
            Series {
                label: "FT test",
                colour: FT_TEST,
                values: ft.iter().map(test).collect(),
            },
        ]
    };
    let acc = series(|m| m.train_acc, |m| m.test_acc);
    let loss = series(|m| m.train_loss, |m| m.test_loss);
    panel(&mut img, (0, 0, w / 2, h), "Accuracy", &acc, Some((0.0, 1.0)));
    panel(&mut img, (w / 2, 0, w / 2, h), "Loss", &loss, None);
    img
}

fn panel(
    img: &mut RgbImage,
    (px, py, pw, ph): (u32, u32, u32, u32),
    title: &str,
    series: &[Series],
    range: Option<(f64, f64)>,
) {
    let (left, right, top, bottom) = (
        px as f64 + 60.0,
        (px + pw) as f64 - 20.0,
        py as f64 + 40.0,
        (py + ph) as f64 - 70.0,
    );
    let epochs = series.iter().map(|s| s.values.len()).max().unwrap_or(0).max(2);
    let (lo, hi) = range.unwrap_or_else(|| {
        let max = series
            .iter()
            .flat_map(|s| s.values.iter().cloned())
            .filter(|v| v.is_finite())
            .fold(0f64, f64::max);
        (0.0, if max > 0.0 { max * 1.1 } else { 1.0 })
    });
    let x_of = |e: usize| left + (right - left) * (e as f64 - 1.0) / (epochs as f64 - 1.0);
    let y_of = |v: f64| bottom - (bottom - top) * ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
    text(
        img,
        (px + pw / 2 - text_width(title, 2) / 2) as i64,
        py as i64 + 10,
        title,
        2,
        INK,
    );
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        let y = y_of(v);
        line(img, (left, y), (right, y), 1, GRID);
        let label = if hi <= 1.0 {
            format!("{:.0}%", v * 100.0)
        } else {
            format!("{v:.2}")
        };
        text(img, px as i64 + 4, y as i64 - 4, &label, 1, INK);
    }
    for e in 1..=epochs {
        if epochs <= 15 || e % 5 == 0 || e == 1 {
            let x = x_of(e);
            line(img, (x, bottom), (x, bottom + 4.0), 1, INK);
            text(
                img,
                x as i64 - 4 * e.to_string().len() as i64,
                bottom as i64 + 8,
                &e.to_string(),
                1,
                INK,
            );
        }
    }
    text(
        img,
        ((left + right) / 2.0) as i64 - 20,
        bottom as i64 + 22,
        "epoch",
        1,
        INK,
    );
    line(img, (left, top), (left, bottom), 1, INK);
    line(img, (left, bottom), (right, bottom), 1, INK);
    for s in series {
        for (i, pair) in s.values.windows(2).enumerate() {
            line(
                img,
                (x_of(i + 1), y_of(pair[0])),
                (x_of(i + 2), y_of(pair[1])),
                2,
                s.colour,
            );
        }
        if s.values.len() == 1 {
            fill_rect(img, x_of(1) as i64 - 2, y_of(s.values[0]) as i64 - 2, 5, 5, s.colour);
        }
    }
    // Legend under the axes.
    let mut x = left as i64;
    for s in series.iter().filter(|s| !s.values.is_empty()) {
        fill_rect(img, x, bottom as i64 + 44, 16, 4, s.colour);
        text(img, x + 20, bottom as i64 + 42, s.label, 1, INK);
        x += 20 + text_width(s.label, 1) as i64 + 18;
    }
}
