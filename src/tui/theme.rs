//! Colours in one place, so `NO_COLOR` is honoured everywhere by
//! construction: with it, every style keeps only bold/reverse/dim.
//! The colours are the 16 ANSI ones, which 256-colour terminals and
//! every theme map to something readable.

use ratatui::style::{Color, Modifier, Style};

/// The palette for one session.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub no_color: bool,
}

impl Theme {
    pub fn new(no_color: bool) -> Theme {
        Theme { no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.no_color {
            Style::default()
        } else {
            Style::default().fg(color)
        }
    }

    /// Titles, the selected tab, headers.
    pub fn accent(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Secondary text: units, hints.
    pub fn dim(self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::DIM)
        } else {
            Style::default().fg(Color::DarkGray)
        }
    }

    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    /// The selected row of a list.
    pub fn selected(self) -> Style {
        if self.no_color {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        }
    }

    /// Series colours for charts: FE train, FE test, FT train, FT test.
    pub fn series(self, i: usize) -> Style {
        const C: [Color; 4] = [Color::Blue, Color::Cyan, Color::Magenta, Color::Yellow];
        self.fg(C[i % C.len()])
    }

    /// Bars and gauges.
    pub fn bar(self) -> Style {
        self.fg(Color::Green)
    }
}
