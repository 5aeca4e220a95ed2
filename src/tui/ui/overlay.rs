//! Pop-ups drawn over any screen: the key help and the quit confirmation.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap};

use crate::tui::theme::Theme;

/// Every key, grouped as the help overlay lists them.
pub const KEYS: [(&str, &str); 14] = [
    ("Tab / Shift-Tab", "next / previous screen"),
    ("1 … 5", "Explore, Train, Grad-CAM, Compare, Filters"),
    ("?", "this help (Esc closes)"),
    ("q", "quit (asks while training)"),
    ("Ctrl-C", "stop after this batch and quit; twice: at once"),
    ("", ""),
    ("Grad-CAM screen", ""),
    ("↑ ↓  or  k j", "previous / next class"),
    ("← →  or  h l", "previous / next sample of the class"),
    ("m", "samples: all → correct → misclassified"),
    ("t", "explain the true class / the predicted class"),
    ("c", "method: Grad-CAM → ++ → HiResCAM → EigenCAM"),
    ("", ""),
    ("", "Files of every finished phase stay in the run folder."),
];

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [_, v, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height.min(area.height)),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, h, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width.min(area.width)),
        Constraint::Fill(1),
    ])
    .areas(v);
    h
}

/// The `?` overlay.
pub fn help(theme: Theme, area: Rect, buf: &mut Buffer) {
    let rect = centered(area, 72, KEYS.len() as u16 + 2);
    Clear.render(rect, buf);
    let lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            if what.is_empty() {
                Line::from(Span::styled(*k, theme.accent()))
            } else {
                Line::from(vec![
                    Span::styled(format!("{k:>16}  "), theme.accent()),
                    Span::raw(*what),
                ])
            }
        })
        .collect();
    Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" keys "))
        .render(rect, buf);
}

/// `q` while training.
pub fn confirm_quit(theme: Theme, area: Rect, buf: &mut Buffer) {
    let rect = centered(area, 60, 6);
    Clear.render(rect, buf);
    let text = vec![
        Line::from("Training is still running."),
        Line::from("Stop after this batch and quit? Finished phases stay saved."),
        Line::from(vec![
            Span::styled("y", theme.accent()),
            Span::raw(" stop and quit    "),
            Span::styled("n", theme.accent()),
            Span::raw(" keep training"),
        ]),
    ];
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" quit? ")
                .border_style(theme.warn()),
        )
        .render(rect, buf);
}
