//! Filters: what the frozen backbone computes, the conv1 filters and the
//! layer4 activation maps of the first Grad-CAM sample.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Block, Borders, Widget};

use super::centered_note;
use crate::tui::app::App;
use crate::tui::pictures::{PicId, Pictures};
use crate::tui::theme::Theme;

pub fn render(app: &App, theme: Theme, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    for (rect, id, title) in [
        (left, PicId::Filters, " conv1 filters (64, 7×7, frozen) "),
        (right, PicId::Activations, " layer4 activation maps, first sample "),
    ] {
        let block = Block::default().borders(Borders::ALL).title(title);
        let inner = block.inner(rect);
        block.render(rect, buf);
        if pictures.has(id) {
            pictures.render(id, inner, buf);
        } else if app.filters_ready {
            centered_note("loading…", theme, inner, buf);
        } else {
            centered_note("written after feature extraction (phase 3)", theme, inner, buf);
        }
    }
}
