//! Compare: FE vs FT accuracy with the train/test gap, per-class accuracy
//! with deltas and focus, flagged classes, and both confusion matrices.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Widget};

use super::{centered_note, head, pct};
use crate::report::{PhaseSummary, Summary};
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let Some(s) = app
        .summary
        .as_ref()
        .filter(|s| s.feature_extraction.is_some() || s.fine_tuning.is_some())
    else {
        let block = Block::default().borders(Borders::ALL).title(" Compare ");
        let inner = block.inner(area);
        block.render(area, buf);
        centered_note("The comparison fills in as training phases finish.", theme, inner, buf);
        return;
    };
    let [top, bottom] = Layout::vertical([Constraint::Length(6), Constraint::Min(0)]).areas(area);
    let [acc, flags] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(top);
    accuracy(s, theme, acc, buf);
    flagged(s, theme, flags, buf);
    let [classes, confusion] = Layout::horizontal([Constraint::Length(44), Constraint::Min(0)]).areas(bottom);
    per_class(s, theme, classes, buf);
    matrices(s, theme, confusion, buf);
}

fn accuracy(s: &Summary, theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut rows = Vec::new();
    for (name, p) in [
        ("feature extraction", &s.feature_extraction),
        ("fine-tuning", &s.fine_tuning),
    ] {
        if let Some(p) = p {
            let last = p.epochs.last();
            let train = last.map(|e| e.train_acc).unwrap_or(0.0);
            rows.push(Row::new(vec![
                name.to_string(),
                pct(p.final_test_acc),
                pct(train),
                format!("{:+.1}", (train - p.final_test_acc) * 100.0),
            ]));
        }
    }
    if let (Some(fe), Some(ft)) = (&s.feature_extraction, &s.fine_tuning) {
        let d = ft.final_test_acc - fe.final_test_acc;
        let style = if d >= 0.0 { theme.good() } else { theme.bad() };
        rows.push(
            Row::new(vec![
                "FT − FE".to_string(),
                format!("{:+.1} pts", d * 100.0),
                String::new(),
                String::new(),
            ])
            .style(style),
        );
    }
    Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(vec!["approach", "test acc", "train", "gap"]).style(theme.accent()))
    .block(Block::default().borders(Borders::ALL).title(" Accuracy "))
    .render(area, buf);
}

fn focus_of(s: &Summary, key: &str, class: &str) -> Option<(f64, bool)> {
    s.focus
        .get(key)?
        .iter()
        .find(|f| f.class == class)
        .map(|f| (f.mean_energy, f.flagged))
}

fn flagged(s: &Summary, theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut lines = Vec::new();
    for (name, key) in [("FE", "feature_extraction"), ("FT", "fine_tuning")] {
        let Some(list) = s.focus.get(key) else {
            continue;
        };
        let flagged: Vec<&str> = list.iter().filter(|f| f.flagged).map(|f| f.class.as_str()).collect();
        let text = if flagged.is_empty() {
            Span::styled("none flagged", theme.good())
        } else {
            Span::styled(flagged.join(", "), theme.bad())
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{name}: "), theme.accent()),
            text,
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no masks: focus not scored", theme.dim())));
    }
    Paragraph::new(lines)
        .wrap(ratatui::widgets::Wrap { trim: true })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Shortcut check: low focus ⚑ "),
        )
        .render(area, buf);
}

fn per_class(s: &Summary, theme: Theme, area: Rect, buf: &mut Buffer) {
    let acc = |p: &Option<PhaseSummary>, i: usize| p.as_ref().and_then(|p| p.per_class_acc.get(i).copied());
    let rows: Vec<Row> = s
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (fe, ft) = (acc(&s.feature_extraction, i), acc(&s.fine_tuning, i));
            let delta = match (fe, ft) {
                (Some(a), Some(b)) => {
                    let st = if b >= a { theme.good() } else { theme.bad() };
                    Span::styled(format!("{:+.0}", (b - a) * 100.0), st)
                }
                _ => Span::raw(""),
            };
            let focus = focus_of(s, "fine_tuning", c).or_else(|| focus_of(s, "feature_extraction", c));
            let focus_cell = match focus {
                Some((f, true)) => Span::styled(format!("{f:.2}⚑"), theme.bad()),
                Some((f, false)) => Span::raw(format!("{f:.2}")),
                None => Span::styled("–", theme.dim()),
            };
            let show = |v: Option<f64>| v.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "–".into());
            Row::new(vec![
                Line::from(head(c, 18)),
                Line::from(show(fe)).right_aligned(),
                Line::from(show(ft)).right_aligned(),
                Line::from(delta).right_aligned(),
                Line::from(focus_cell).right_aligned(),
            ])
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec![
            Line::from("class"),
            Line::from("FE").right_aligned(),
            Line::from("FT").right_aligned(),
            Line::from("Δ").right_aligned(),
            Line::from("focus").right_aligned(),
        ])
        .style(theme.accent()),
    )
    .block(Block::default().borders(Borders::ALL).title(" Per class "))
    .render(area, buf);
}

/// Columns per matrix cell for `n` classes with counts up to `max` in `width`.
fn cell_width(width: u16, n: usize, max: usize) -> Option<usize> {
    let cell = ((width as usize).saturating_sub(3) / n.max(1)).min(4);
    (cell > max.to_string().len()).then_some(cell)
}

fn matrices(s: &Summary, theme: Theme, area: Rect, buf: &mut Buffer) {
    let mut list: Vec<(&str, &PhaseSummary)> = [("FE", &s.feature_extraction), ("FT", &s.fine_tuning)]
        .into_iter()
        .filter_map(|(n, p)| p.as_ref().map(|p| (n, p)))
        .collect();
    let n = s.classes.len();
    let max = list
        .iter()
        .flat_map(|(_, p)| p.confusion.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    // Side by side when both fit, else the newest model's alone.
    let half = (area.width / list.len().max(1) as u16).saturating_sub(2);
    if list.len() > 1 && cell_width(half, n, max).is_none() {
        list.remove(0);
    }
    let areas = Layout::horizontal(vec![Constraint::Fill(1); list.len().max(1)]).split(area);
    for ((name, p), rect) in list.iter().zip(areas.iter()) {
        let block = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {name} confusion (row: true) "));
        let inner = block.inner(*rect);
        block.render(*rect, buf);
        let Some(cell) = cell_width(inner.width, n, max).filter(|_| inner.height as usize > n) else {
            centered_note("enlarge the window to see this matrix", theme, inner, buf);
            continue;
        };
        let mut lines = vec![Line::from(Span::styled(
            format!("   {}", (0..n).map(|j| format!("{:>cell$}", j + 1)).collect::<String>()),
            theme.dim(),
        ))];
        for (i, row) in p.confusion.iter().enumerate() {
            let mut spans = vec![Span::styled(format!("{:>2} ", i + 1), theme.dim())];
            for (j, &v) in row.iter().enumerate() {
                let style = if v == 0 {
                    theme.dim()
                } else if i == j {
                    theme.good()
                } else {
                    theme.bad()
                };
                let text = if v == 0 { "·".to_string() } else { v.to_string() };
                spans.push(Span::styled(format!("{text:>cell$}"), style));
            }
            lines.push(Line::from(spans));
        }
        Paragraph::new(lines).render(inner, buf);
    }
}
