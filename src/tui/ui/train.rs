//! Train: the running phase with elapsed time, ETA and a gauge for the
//! epoch; the epoch table of both phases; accuracy and loss charts (both
//! phases on one x axis) and a sparkline of batch losses.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Sparkline, Table, Widget,
};

use super::{centered_note, clock, pct};
use crate::train::Phase;
use crate::tui::app::{App, RunState};
use crate::tui::theme::Theme;

fn short(phase: Phase) -> &'static str {
    match phase {
        Phase::FeatureExtraction => "FE",
        Phase::FineTuning => "FT",
        _ => "",
    }
}

pub fn render(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let [top, body] = Layout::vertical([Constraint::Length(5), Constraint::Min(0)]).areas(area);
    progress(app, theme, top, buf);
    let [left, right] = Layout::horizontal([Constraint::Length(48), Constraint::Min(0)]).areas(body);
    epoch_table(app, theme, left, buf);
    let [acc, loss, spark] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Percentage(40),
        Constraint::Min(3),
    ])
    .areas(right);
    chart(app, theme, acc, buf, true);
    chart(app, theme, loss, buf, false);
    sparkline(app, theme, spark, buf);
}

fn progress(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let block = Block::default().borders(Borders::ALL).title(" Progress ");
    let inner = block.inner(area);
    block.render(area, buf);
    let [line, folder, gauge] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
    if let Some(dir) = &app.run_dir {
        let room = folder.width.saturating_sub(12) as usize;
        Paragraph::new(Line::from(vec![
            Span::styled("run folder ", theme.dim()),
            Span::raw(super::tail(&dir.display().to_string(), room)),
        ]))
        .render(folder, buf);
    }
    let phase = app
        .current
        .map(|p| p.title().to_string())
        .unwrap_or_else(|| match &app.state {
            RunState::Preparing => "Preparing: decoding images, loading weights".into(),
            RunState::Finished | RunState::Viewing => "All phases done".into(),
            RunState::Stopped => "Stopped; finished phases are saved".into(),
            RunState::Failed(m) => format!("Failed: {m}"),
            _ => String::new(),
        });
    let mut spans = vec![Span::styled(phase, theme.accent())];
    if let Some(log) = app.current.and_then(|p| app.phase_log(p)) {
        spans.push(Span::styled(format!(" · trains {}", log.trainable), theme.dim()));
    }
    if app.state != RunState::Viewing {
        spans.push(Span::styled(
            format!(" · elapsed {}", clock(app.elapsed())),
            theme.dim(),
        ));
    }
    if let Some(eta) = app.phase_eta().filter(|_| app.current.is_some()) {
        spans.push(Span::styled(format!(" · phase ETA {}", clock(eta)), theme.dim()));
    }
    Paragraph::new(Line::from(spans)).render(line, buf);
    match (&app.batch, app.current) {
        (Some(b), Some(p)) if p == b.phase => {
            let planned = app.phase_log(p).map(|l| l.planned_epochs).unwrap_or(0);
            Gauge::default()
                .gauge_style(theme.bar())
                .ratio((b.batch as f64 / b.batches.max(1) as f64).clamp(0.0, 1.0))
                .label(format!(
                    "{} epoch {}/{planned} · batch {}/{} · {:.1} img/s · loss {:.3}",
                    short(p),
                    b.epoch,
                    b.batch,
                    b.batches,
                    b.images_per_second,
                    b.loss
                ))
                .render(gauge, buf);
        }
        _ => {
            if let Some((done, total)) = app.decoding {
                Gauge::default()
                    .gauge_style(theme.bar())
                    .ratio(done as f64 / total.max(1) as f64)
                    .label(format!("decoding images {done}/{total}"))
                    .render(gauge, buf);
            }
        }
    }
}

fn epoch_table(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let block = Block::default().borders(Borders::ALL).title(" Epochs ");
    let inner = block.inner(area);
    block.render(area, buf);
    let mut rows = Vec::new();
    for log in &app.phases {
        for e in &log.epochs {
            rows.push(Row::new(vec![
                format!("{} {:>2}", short(log.phase), e.epoch),
                format!("{:.4}", e.train_loss),
                pct(e.train_acc),
                format!("{:.4}", e.test_loss),
                pct(e.test_acc),
                format!("{:.1}", e.seconds),
            ]));
        }
    }
    if rows.is_empty() {
        centered_note("epoch rows appear as epochs finish", theme, inner, buf);
        return;
    }
    // Keep the newest rows when the table is taller than the box.
    let fit = inner.height.saturating_sub(1) as usize;
    let skip = rows.len().saturating_sub(fit);
    let rows: Vec<Row> = rows.into_iter().skip(skip).collect();
    Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
    )
    .header(Row::new(vec!["epoch", "tr loss", "tr acc", "te loss", "te acc", "sec"]).style(theme.accent()))
    .render(inner, buf);
}

/// Points per series: FE train, FE test, FT train, FT test; x continues across phases.
fn series(app: &App, accuracy: bool) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = Vec::new();
    let mut offset = 0.0;
    for log in &app.phases {
        let name = short(log.phase);
        let pick = |train: bool| -> Vec<(f64, f64)> {
            log.epochs
                .iter()
                .map(|e| {
                    let y = match (accuracy, train) {
                        (true, true) => e.train_acc,
                        (true, false) => e.test_acc,
                        (false, true) => e.train_loss,
                        (false, false) => e.test_loss,
                    };
                    (offset + e.epoch as f64, y)
                })
                .collect()
        };
        out.push((format!("{name} train"), pick(true)));
        out.push((format!("{name} test"), pick(false)));
        offset += log.planned_epochs.max(log.epochs.len()) as f64;
    }
    out
}

fn chart(app: &App, theme: Theme, area: Rect, buf: &mut Buffer, accuracy: bool) {
    let title = if accuracy { " Accuracy " } else { " Loss " };
    let data = series(app, accuracy);
    let x_max: f64 = app
        .phases
        .iter()
        .map(|l| l.planned_epochs.max(l.epochs.len()) as f64)
        .sum::<f64>()
        .max(2.0);
    let y_max = if accuracy {
        1.0
    } else {
        data.iter()
            .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
            .filter(|y| y.is_finite())
            .fold(0.0f64, f64::max)
            .max(0.1)
            * 1.05
    };
    let datasets: Vec<Dataset> = data
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| !p.is_empty())
        .map(|(i, (name, points))| {
            Dataset::default()
                .name(name.clone())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.series(i))
                .data(points)
        })
        .collect();
    let y_labels: Vec<Line> = if accuracy {
        vec!["0%".into(), "50%".into(), "100%".into()]
    } else {
        vec![
            "0".into(),
            format!("{:.2}", y_max / 2.0).into(),
            format!("{y_max:.2}").into(),
        ]
    };
    Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .x_axis(
            Axis::default()
                .style(theme.dim())
                .bounds([1.0, x_max])
                .labels(vec![Line::from("1"), Line::from(format!("{x_max:.0}"))]),
        )
        .y_axis(Axis::default().style(theme.dim()).bounds([0.0, y_max]).labels(y_labels))
        .legend_position(Some(ratatui::widgets::LegendPosition::BottomRight))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .render(area, buf);
}

fn sparkline(app: &App, theme: Theme, area: Rect, buf: &mut Buffer) {
    let title = match app.phases.last() {
        Some(l) => format!(" Batch loss, {} ", short(l.phase)),
        None => " Batch loss ".to_string(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    block.render(area, buf);
    let max = app
        .batch_losses
        .iter()
        .cloned()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    if max <= 0.0 {
        return;
    }
    // Newest batches on the right; scaled to thousandths of the maximum.
    let take = inner.width as usize;
    let skip = app.batch_losses.len().saturating_sub(take);
    let values: Vec<u64> = app.batch_losses[skip..]
        .iter()
        .map(|v| if v.is_finite() { (v / max * 1000.0) as u64 } else { 0 })
        .collect();
    Sparkline::default()
        .style(theme.series(2))
        .max(1000)
        .data(&values)
        .render(inner, buf);
}
