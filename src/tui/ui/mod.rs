//! Drawing: one pure function per screen, from the state into a buffer.
//! Nothing here reads the clock, the disk or the terminal, so a fixed
//! state always draws the same cells (the snapshot tests rely on it).

mod compare;
mod explore;
mod filters;
mod gradcam;
mod overlay;
mod train;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Widget};

use super::app::{App, RunState, Screen};
use super::pictures::Pictures;
use super::theme::Theme;

/// The smallest terminal the layout is made for.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Draw the whole screen.
pub fn render(app: &App, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let theme = Theme::new(app.no_color);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "flowercam needs {MIN_WIDTH}×{MIN_HEIGHT}; this window is {}×{}: make the window larger (q quits)",
            area.width, area.height
        );
        Paragraph::new(text)
            .style(theme.warn())
            .wrap(ratatui::widgets::Wrap { trim: true })
            .render(area, buf);
        return;
    }
    let [header, status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    render_tabs(app, theme, header, buf);
    render_status(app, theme, status, buf);
    match app.screen {
        Screen::Explore => explore::render(app, theme, pictures, body, buf),
        Screen::Train => train::render(app, theme, body, buf),
        Screen::GradCam => gradcam::render(app, theme, pictures, body, buf),
        Screen::Compare => compare::render(app, theme, body, buf),
        Screen::Filters => filters::render(app, theme, pictures, body, buf),
    }
    render_footer(app, theme, pictures.protocol_name(), footer, buf);
    if app.help {
        overlay::help(theme, area, buf);
    }
    if app.confirm_quit {
        overlay::confirm_quit(theme, area, buf);
    }
}

fn render_tabs(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(12)]).areas(area);
    let titles: Vec<Line> = Screen::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| Line::from(format!("{} {}", i + 1, s.title())))
        .collect();
    Tabs::new(titles)
        .select(app.screen.index())
        .style(theme.dim())
        .highlight_style(theme.selected())
        .divider("│")
        .render(left, buf);
    Paragraph::new(Line::from(Span::styled("flowercam ", theme.accent())).right_aligned()).render(right, buf);
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn render_status(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let state = match &app.state {
        RunState::Preparing => Span::styled("preparing", theme.warn()),
        RunState::Running => Span::styled("training", theme.good()),
        RunState::Stopping => Span::styled("stopping after this batch…", theme.warn()),
        RunState::Finished => Span::styled("finished", theme.good()),
        RunState::Stopped => Span::styled("stopped", theme.warn()),
        RunState::Failed(_) => Span::styled("failed", theme.bad()),
        RunState::Viewing => Span::styled("viewing", theme.accent()),
    };
    let mut spans = vec![state, Span::styled(" · ", theme.dim())];
    if let Some(label) = &app.label {
        spans.push(Span::styled(label.clone(), theme.warn()));
        spans.push(Span::styled(" · ", theme.dim()));
    } else {
        spans.push(Span::raw(app.name.clone()));
        spans.push(Span::styled(" · ", theme.dim()));
    }
    if !app.device.is_empty() {
        spans.push(Span::raw(app.device.clone()));
        spans.push(Span::styled(" · ", theme.dim()));
    }
    if app.state != RunState::Viewing {
        spans.push(Span::raw(clock(app.elapsed())));
    }
    Paragraph::new(Line::from(spans)).render(area, buf);
}

fn render_footer(app: &App, theme: Theme, protocol: &str, area: Rect, buf: &mut Buffer) {
    let keys = match app.screen {
        Screen::GradCam => "↑↓ class  ←→ sample  m filter  t target  c method  ? help  q quit",
        _ => "Tab/1-5 screens  ? help  q quit",
    };
    let right = match &app.state {
        RunState::Failed(msg) => format!("error: {msg}"),
        _ => format!("images: {protocol}"),
    };
    let room = (area.width as usize).saturating_sub(keys.chars().count() + 1);
    let width = right.chars().count().min(room.max(area.width as usize / 3)) as u16;
    let [l, r] = Layout::horizontal([Constraint::Min(0), Constraint::Length(width)]).areas(area);
    Paragraph::new(Span::styled(keys, theme.dim())).render(l, buf);
    let style = if matches!(app.state, RunState::Failed(_)) {
        theme.bad()
    } else {
        theme.dim()
    };
    Paragraph::new(Line::from(Span::styled(head(&right, width as usize), style)).right_aligned()).render(r, buf);
}

/// The last `n` characters, with an ellipsis when cut (paths keep their end).
pub fn tail(text: &str, n: usize) -> String {
    let count = text.chars().count();
    if count <= n {
        return text.to_string();
    }
    let keep: String = text.chars().skip(count + 1 - n).collect();
    format!("…{keep}")
}

/// The first `n` characters, with an ellipsis when cut.
pub fn head(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let keep: String = text.chars().take(n.saturating_sub(1)).collect();
    format!("{keep}…")
}

/// A percentage with one decimal.
pub fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// A centred message in `area`.
pub fn centered_note(text: &str, theme: Theme, area: Rect, buf: &mut Buffer) {
    let lines = text.lines().count().max(1) as u16;
    let [_, mid, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(lines.min(area.height)),
        Constraint::Fill(1),
    ])
    .areas(area);
    Paragraph::new(text.to_string())
        .style(theme.dim())
        .alignment(ratatui::layout::Alignment::Center)
        .wrap(ratatui::widgets::Wrap { trim: true })
        .render(mid, buf);
}
