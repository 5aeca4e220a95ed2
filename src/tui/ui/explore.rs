//! Explore: the class table with balance bars, the dataset path and what
//! was skipped, and the first test image of every class.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Table, Widget};

use super::{centered_note, head, tail};
use crate::tui::app::App;
use crate::tui::pictures::{PicId, Pictures};
use crate::tui::theme::Theme;

pub fn render(app: &App, theme: Theme, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let block = Block::default().borders(Borders::ALL).title(" Classes ");
    let inner = block.inner(left);
    block.render(left, buf);
    if app.table.is_empty() {
        if let Some((done, total)) = app.decoding {
            let [_, g, _] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
            Gauge::default()
                .gauge_style(theme.bar())
                .ratio(done as f64 / total.max(1) as f64)
                .label(format!("decoding images {done}/{total}"))
                .render(g, buf);
        } else {
            centered_note("reading the dataset…", theme, inner, buf);
        }
    } else {
        class_table(app, theme, inner, buf);
    }
    samples(app, theme, pictures, right, buf);
}

fn class_table(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let n = app.table.len() as u16;
    let [table_area, info] = Layout::vertical([Constraint::Length(n + 2), Constraint::Min(0)]).areas(area);
    let max = app.table.iter().map(|r| r.train + r.test).max().unwrap_or(1).max(1);
    let longest = app.table.iter().map(|r| r.name.chars().count()).max().unwrap_or(5) as u16;
    let name_w = longest.clamp(5, (area.width / 3).max(12));
    // Columns and their four separating spaces; the bar gets the rest.
    let bar_w = area.width.saturating_sub(name_w + 4 + 5 + 5 + 4).max(1) as usize;
    let mut rows: Vec<Row> = app
        .table
        .iter()
        .map(|r| {
            let cells = ((r.train + r.test) * bar_w).div_ceil(max);
            let train_cells = (r.train * bar_w).div_ceil(max).min(cells);
            Row::new(vec![
                Cell::from(head(&r.name, name_w as usize)),
                Cell::from(r.label.map(|l| (l + 1).to_string()).unwrap_or_default()),
                Cell::from(format!("{:>5}", r.train)),
                Cell::from(format!("{:>5}", r.test)),
                Cell::from(Line::from(vec![
                    Span::styled("█".repeat(train_cells), theme.bar()),
                    Span::styled("▒".repeat(cells - train_cells), theme.series(1)),
                ])),
            ])
        })
        .collect();
    let (tr, te) = app.table.iter().fold((0, 0), |a, r| (a.0 + r.train, a.1 + r.test));
    rows.push(
        Row::new(vec![
            Cell::from("total"),
            Cell::from(""),
            Cell::from(format!("{tr:>5}")),
            Cell::from(format!("{te:>5}")),
            Cell::from(Span::styled("█ tr ▒ te", theme.dim())),
        ])
        .style(theme.dim()),
    );
    Table::new(
        rows,
        [
            Constraint::Length(name_w),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Min(1),
        ],
    )
    .header(Row::new(vec!["class", "lbl", "train", " test", "balance"]).style(theme.accent()))
    .render(table_area, buf);
    let mut lines = Vec::new();
    if let Some(root) = &app.data_root {
        lines.push(Line::from(vec![
            Span::styled("dataset ", theme.dim()),
            Span::raw(tail(&root.display().to_string(), info.width.saturating_sub(8) as usize)),
        ]));
    }
    if app.skipped.is_empty() {
        lines.push(Line::from(Span::styled("no unreadable files", theme.dim())));
    } else {
        lines.push(Line::from(Span::styled(
            format!("{} files skipped:", app.skipped.len()),
            theme.warn(),
        )));
        for (path, why) in &app.skipped {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            lines.push(Line::from(format!("  {name}: {why}")));
        }
    }
    Paragraph::new(lines).render(info, buf);
}

fn samples(app: &App, theme: Theme, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" First test image per class ");
    let inner = block.inner(area);
    block.render(area, buf);
    if app.thumbnails.is_empty() {
        centered_note("loading thumbnails…", theme, inner, buf);
        return;
    }
    let names = app.class_names();
    let n = app.thumbnails.len();
    let cols = if inner.width >= 60 { 4 } else { 3 }.min(n).max(1);
    let rows = n.div_ceil(cols);
    let row_areas = Layout::vertical(vec![Constraint::Fill(1); rows]).split(inner);
    for (r, row) in row_areas.iter().enumerate() {
        let cells = Layout::horizontal(vec![Constraint::Fill(1); cols]).split(*row);
        for (c, cell) in cells.iter().enumerate() {
            let Some(&class) = app.thumbnails.get(r * cols + c) else {
                continue;
            };
            let [pic, caption] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(*cell);
            pictures.render(PicId::Thumb(class), pic, buf);
            let name = names.get(class).cloned().unwrap_or_default();
            Paragraph::new(Span::styled(head(&name, caption.width as usize), theme.dim()))
                .centered()
                .render(caption, buf);
        }
    }
}
