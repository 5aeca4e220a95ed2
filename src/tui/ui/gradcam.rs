//! Grad-CAM: classes with their accuracy and focus on the left; for the
//! selected class one test image and each model's overlay side by side,
//! with prediction, confidence and focus under each.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Widget};

use super::{centered_note, head};
use crate::tui::app::App;
use crate::tui::pictures::{PicId, Pictures};
use crate::tui::theme::Theme;

/// Per-class accuracy and focus of the newest model, with a flag for
/// classes whose focus is under the threshold.
fn class_stats(app: &App, class: usize) -> (Option<f64>, Option<f64>, bool) {
    let Some(s) = &app.summary else {
        return (None, None, false);
    };
    let acc = s
        .fine_tuning
        .as_ref()
        .or(s.feature_extraction.as_ref())
        .and_then(|p| p.per_class_acc.get(class).copied());
    let name = s.classes.get(class);
    let focus = ["fine_tuning", "feature_extraction"]
        .iter()
        .find_map(|k| s.focus.get(*k))
        .and_then(|list| list.iter().find(|f| Some(&f.class) == name));
    (acc, focus.map(|f| f.mean_energy), focus.is_some_and(|f| f.flagged))
}

pub fn render(app: &App, theme: Theme, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let [left, right] = Layout::horizontal([Constraint::Length(34), Constraint::Min(0)]).areas(area);
    class_list(app, theme, left, buf);
    sample(app, theme, pictures, right, buf);
}

fn class_list(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let names = app.class_names();
    let rows: Vec<Row> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (acc, focus, flagged) = class_stats(app, i);
            let row = Row::new(vec![
                Line::from(head(name, 18)),
                Line::from(acc.map(|a| format!("{:.0}%", a * 100.0)).unwrap_or_else(|| "–".into())).right_aligned(),
                Line::from(focus.map(|f| format!("{f:.2}")).unwrap_or_else(|| "–".into())).right_aligned(),
                Line::from(if flagged {
                    Span::styled("⚑", theme.bad())
                } else {
                    Span::raw("")
                }),
            ]);
            if i == app.cam.class {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(1),
        ],
    )
    .header(
        Row::new(vec![
            Line::from("class"),
            Line::from("acc").right_aligned(),
            Line::from("focus").right_aligned(),
            Line::from(""),
        ])
        .style(theme.accent()),
    )
    .block(Block::default().borders(Borders::ALL).title(" Classes "))
    .render(area, buf);
}

fn sample(app: &App, theme: Theme, pictures: &mut Pictures, area: Rect, buf: &mut Buffer) {
    let names = app.class_names();
    let class_name = names.get(app.cam.class).cloned().unwrap_or_default();
    let cam = &app.cam;
    let position = match &cam.shown {
        Some(s) if s.count > 0 => format!("{}/{}", s.query.index + 1, s.count),
        Some(_) => "0/0".into(),
        None => "–".into(),
    };
    let busy = if cam.waiting { " · computing…" } else { "" };
    let target = match cam.target {
        crate::browse::CamTarget::TrueLabel => "true",
        crate::browse::CamTarget::Predicted => "predicted",
    };
    let title = format!(
        " {class_name} · {position} {} · target {target}{busy} ",
        cam.filter.label()
    );
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    if cam.models.is_empty() {
        let note = cam.note.clone().unwrap_or_else(|| {
            "Grad-CAM views appear when feature extraction has finished:\nthey explain a trained checkpoint.".into()
        });
        centered_note(&note, theme, inner, buf);
        return;
    }
    let Some(shown) = &cam.shown else {
        centered_note("computing…", theme, inner, buf);
        return;
    };
    if shown.count == 0 {
        centered_note(
            &format!(
                "no {} test image of {class_name}; m changes the filter",
                cam.filter.label()
            ),
            theme,
            inner,
            buf,
        );
        return;
    }
    let columns = 1 + shown.models.len();
    let cols = Layout::horizontal(vec![Constraint::Fill(1); columns]).split(inner);
    for (i, col) in cols.iter().enumerate() {
        let [head_area, pic, caption] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(2)]).areas(*col);
        if i == 0 {
            Paragraph::new(Span::styled("image", theme.accent()))
                .centered()
                .render(head_area, buf);
            pictures.render(PicId::Sample, pic, buf);
            let index = shown.test_index.map(|t| format!("test image #{t}")).unwrap_or_default();
            Paragraph::new(vec![
                Line::from(format!("true: {}", head(&class_name, caption.width as usize - 6))).centered(),
                Line::from(Span::styled(index, theme.dim())).centered(),
            ])
            .render(caption, buf);
            continue;
        }
        let m = &shown.models[i - 1];
        Paragraph::new(Span::styled(
            format!("{} {}", m.name, cam.method.title()),
            theme.accent(),
        ))
        .centered()
        .render(head_area, buf);
        pictures.render(PicId::Overlay(i - 1), pic, buf);
        let right = m.predicted == app.cam.class;
        let pred = names.get(m.predicted).cloned().unwrap_or_default();
        let mark = if right {
            Span::styled("✓ ", theme.good())
        } else {
            Span::styled("✗ ", theme.bad())
        };
        let width = caption.width as usize;
        let line1 = Line::from(vec![
            mark,
            Span::raw(head(&pred, width.saturating_sub(8))),
            Span::raw(format!(" {:.0}%", m.confidence * 100.0)),
        ])
        .centered();
        let focus = match m.focus {
            Some(f) => format!("focus {f:.2}"),
            None => "no mask".into(),
        };
        let explains = if m.target == m.predicted && !right {
            " · of prediction".to_string()
        } else {
            String::new()
        };
        let line2 = Line::from(Span::styled(format!("{focus}{explains}"), theme.dim())).centered();
        Paragraph::new(vec![line1, line2]).render(caption, buf);
    }
}
