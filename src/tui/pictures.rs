//! The images on screen (thumbnails, the sample and its overlays, filters)
//! as terminal graphics. ratatui-image draws them with kitty, sixel or
//! iTerm2 when the terminal speaks one of those, else with colored
//! half-blocks; with `NO_COLOR` and half-blocks, as gray shading characters.
//! Resizing and encoding for a new area happen on an encoder thread, so a
//! window resize never freezes the screen: until the encoding is back, the
//! area shows a placeholder.

use std::collections::HashMap;
use std::sync::mpsc::Sender;

use image::{DynamicImage, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui::style::Style;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{FilterType, Resize, ResizeEncodeRender};

/// Which picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PicId {
    /// First test image of a class (Explore).
    Thumb(usize),
    /// The sample on the Grad-CAM screen.
    Sample,
    /// The overlay of the n-th model (0 = FE, 1 = FT).
    Overlay(usize),
    Filters,
    Activations,
}

/// Work for the encoder thread: fit `protocol` to `size` cells.
pub struct EncodeJob {
    pub id: PicId,
    pub generation: u64,
    pub protocol: StatefulProtocol,
    pub size: Size,
}

impl EncodeJob {
    /// Resize and encode (the slow part, run off the UI thread).
    pub fn run(mut self) -> EncodeJob {
        self.protocol.resize_encode(&resize_mode(), self.size);
        self
    }
}

fn resize_mode() -> Resize {
    // Our images are small (80–224 px); scale them up to the cells they get.
    Resize::Scale(Some(FilterType::Triangle))
}

enum State {
    Ready(Box<StatefulProtocol>),
    /// With the encoder thread.
    Encoding,
    /// Gray shading characters: no protocol needed.
    Shade,
}

struct Slot {
    image: RgbImage,
    generation: u64,
    state: State,
}

/// All pictures, keyed by [`PicId`].
pub struct Pictures {
    picker: Picker,
    shade: bool,
    /// Map half-block colours to the xterm 256-colour palette (no truecolor).
    palette256: bool,
    /// `None`: encode inline (tests, benchmarks).
    encoder: Option<Sender<EncodeJob>>,
    slots: HashMap<PicId, Slot>,
    next_generation: u64,
}

impl Pictures {
    /// Pictures drawn with `picker`'s protocol; `encoder` takes the resizing
    /// off the UI thread (without one, it happens while rendering).
    pub fn new(picker: Picker, no_color: bool, encoder: Option<Sender<EncodeJob>>) -> Pictures {
        let shade = no_color && picker.protocol_type() == ProtocolType::Halfblocks;
        Pictures {
            picker,
            shade,
            palette256: false,
            encoder,
            slots: HashMap::new(),
            next_generation: 0,
        }
    }

    /// Half-blocks, encoded inline: deterministic, for snapshots and benchmarks.
    pub fn halfblocks(no_color: bool) -> Pictures {
        Pictures::new(Picker::halfblocks(), no_color, None)
    }

    /// Draw half-blocks with the 256-colour palette (for terminals without
    /// 24-bit colour, where RGB escapes would come out wrong).
    pub fn with_palette256(mut self, on: bool) -> Pictures {
        self.palette256 = on;
        self
    }

    /// The protocol in use, for the status line.
    pub fn protocol_name(&self) -> &'static str {
        if self.shade {
            return "shading (NO_COLOR)";
        }
        match self.picker.protocol_type() {
            ProtocolType::Halfblocks => "half-blocks",
            ProtocolType::Sixel => "sixel",
            ProtocolType::Kitty => "kitty",
            ProtocolType::Iterm2 => "iTerm2",
        }
    }

    pub fn has(&self, id: PicId) -> bool {
        self.slots.contains_key(&id)
    }

    /// Show `image` as picture `id` from now on.
    pub fn set(&mut self, id: PicId, image: RgbImage) {
        self.next_generation += 1;
        let state = if self.shade {
            State::Shade
        } else {
            State::Ready(Box::new(
                self.picker.new_resize_protocol(DynamicImage::ImageRgb8(image.clone())),
            ))
        };
        self.slots.insert(
            id,
            Slot {
                image,
                generation: self.next_generation,
                state,
            },
        );
    }

    pub fn remove(&mut self, id: PicId) {
        self.slots.remove(&id);
    }

    /// An encoding is back from the thread; `true` if it is still wanted.
    pub fn encoded(&mut self, job: EncodeJob) -> bool {
        match self.slots.get_mut(&job.id) {
            Some(slot) if slot.generation == job.generation => {
                slot.state = State::Ready(Box::new(job.protocol));
                true
            }
            _ => false,
        }
    }

    /// Draw picture `id` into `area` (nothing if there is no such picture).
    pub fn render(&mut self, id: PicId, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let font = self.picker.font_size();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let area = fit(area, slot.image.dimensions(), (font.width, font.height));
        match &mut slot.state {
            State::Shade => shade(&slot.image, area, buf),
            State::Encoding => placeholder(area, buf),
            State::Ready(protocol) => {
                let mode = resize_mode();
                let quantize = self.palette256 && self.picker.protocol_type() == ProtocolType::Halfblocks;
                match (protocol.needs_resize(&mode, area.into()), &self.encoder) {
                    (needed, None) | (needed @ None, Some(_)) => {
                        if let Some(size) = needed {
                            protocol.resize_encode(&mode, size);
                        }
                        protocol.render(area, buf);
                        if quantize {
                            to_palette256(area, buf);
                        }
                    }
                    (Some(size), Some(tx)) => {
                        let State::Ready(protocol) = std::mem::replace(&mut slot.state, State::Encoding) else {
                            unreachable!("matched Ready above")
                        };
                        let job = EncodeJob {
                            id,
                            generation: slot.generation,
                            protocol: *protocol,
                            size,
                        };
                        if let Err(back) = tx.send(job) {
                            // Encoder gone (shutting down): do it here.
                            let job = back.0.run();
                            slot.state = State::Ready(Box::new(job.protocol));
                        }
                        placeholder(area, buf);
                    }
                }
            }
        }
    }
}

/// The largest rectangle inside `area` with the picture's aspect ratio on
/// a terminal whose cells are `font` pixels, centred.
pub fn fit(area: Rect, (w, h): (u32, u32), font: (u16, u16)) -> Rect {
    let (fw, fh) = (font.0.max(1) as f64, font.1.max(1) as f64);
    let aspect = (w.max(1) as f64 / fw) / (h.max(1) as f64 / fh); // cells wide per cell high
    let mut width = area.width as f64;
    let mut height = width / aspect;
    if height > area.height as f64 {
        height = area.height as f64;
        width = height * aspect;
    }
    let (width, height) = ((width.floor() as u16).max(1), (height.floor() as u16).max(1));
    Rect::new(
        area.x + (area.width - width.min(area.width)) / 2,
        area.y + (area.height - height.min(area.height)) / 2,
        width.min(area.width),
        height.min(area.height),
    )
}

/// Whether the terminal says it shows 24-bit colour (`COLORTERM`).
pub fn terminal_has_truecolor() -> bool {
    std::env::var("COLORTERM").is_ok_and(|v| v == "truecolor" || v == "24bit")
}

/// The nearest xterm 256-colour index: the 6×6×6 cube or the gray ramp.
pub fn ansi256(r: u8, g: u8, b: u8) -> u8 {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let nearest = |v: u8| (0..6).min_by_key(|&i| (LEVELS[i] as i32 - v as i32).abs()).unwrap_or(0);
    let (ri, gi, bi) = (nearest(r), nearest(g), nearest(b));
    let cube = (LEVELS[ri], LEVELS[gi], LEVELS[bi]);
    let dist = |c: (u8, u8, u8)| {
        let d = |a: u8, b: u8| (a as i32 - b as i32).pow(2);
        d(c.0, r) + d(c.1, g) + d(c.2, b)
    };
    let avg = (r as u32 + g as u32 + b as u32) / 3;
    let gray_i = ((avg.saturating_sub(8)) / 10).min(23) as u8;
    let gray_v = 8 + 10 * gray_i;
    if dist((gray_v, gray_v, gray_v)) < dist(cube) {
        232 + gray_i
    } else {
        16 + 36 * ri as u8 + 6 * gi as u8 + bi as u8
    }
}

fn to_palette256(area: Rect, buf: &mut Buffer) {
    use ratatui::style::Color;
    let map = |c: Color| match c {
        Color::Rgb(r, g, b) => Color::Indexed(ansi256(r, g, b)),
        other => other,
    };
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let cell = &mut buf[(x, y)];
            let (fg, bg) = (map(cell.fg), map(cell.bg));
            cell.set_fg(fg).set_bg(bg);
        }
    }
}

fn placeholder(area: Rect, buf: &mut Buffer) {
    let text = "…";
    let x = area.x + area.width / 2;
    let y = area.y + area.height / 2;
    buf.set_string(x, y, text, Style::default());
}

/// Gray shading, two rows of pixels per cell averaged, for terminals where
/// colour is unwanted: still shows where the bright (hot) regions are.
pub fn shade(image: &RgbImage, area: Rect, buf: &mut Buffer) {
    const RAMP: [char; 5] = [' ', '░', '▒', '▓', '█'];
    let (w, h) = (area.width as u32, area.height as u32);
    let small = crate::data::cache::resize_rgb(image, None, w.max(1), h.max(1));
    for y in 0..h {
        for x in 0..w {
            let p = small.get_pixel(x, y).0;
            let luma = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
            let i = ((luma / 256.0) * RAMP.len() as f32) as usize;
            buf[(area.x + x as u16, area.y + y as u16)].set_char(RAMP[i.min(RAMP.len() - 1)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_256_picks_cube_and_gray_entries() {
        assert_eq!(ansi256(0, 0, 0), 16);
        assert_eq!(ansi256(255, 255, 255), 231);
        assert_eq!(ansi256(255, 0, 0), 196);
        assert_eq!(ansi256(0, 0, 255), 21);
        assert_eq!(ansi256(128, 128, 128), 244);
        assert_eq!(ansi256(95, 135, 175), 16 + 36 + 2 * 6 + 3);
    }

    #[test]
    fn quantised_pictures_use_no_rgb() {
        let mut p = Pictures::halfblocks(false).with_palette256(true);
        p.set(PicId::Sample, crate::tui::fixture::picture(3, 40));
        let area = Rect::new(0, 0, 20, 10);
        let mut buf = Buffer::empty(area);
        p.render(PicId::Sample, area, &mut buf);
        use ratatui::style::Color;
        assert!(buf.content().iter().any(|c| matches!(c.bg, Color::Indexed(_))));
        assert!(
            !buf.content()
                .iter()
                .any(|c| matches!(c.fg, Color::Rgb(..)) || matches!(c.bg, Color::Rgb(..)))
        );
    }
}
