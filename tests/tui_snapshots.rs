//! Every screen of the fixed TUI state at 80×24 and 160×48, in colour and
//! with NO_COLOR, as insta snapshots: the text, plus a map of where each
//! style is used (pictures are marked `#`; their pixels are the graphics
//! library's business and are checked separately below).

use std::collections::BTreeMap;

use flowercam::tui::app::{RunState, Screen};
use flowercam::tui::fixture;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Style};

/// Text grid, then a style grid with a legend.
fn render_text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut text = String::new();
    let mut styles: BTreeMap<String, char> = BTreeMap::new();
    let mut map = String::new();
    const KEYS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for y in 0..area.height {
        for x in 0..area.width {
            let cell = &buf[(x, y)];
            text.push_str(cell.symbol());
            let is_picture = matches!(cell.fg, Color::Rgb(..)) || matches!(cell.bg, Color::Rgb(..));
            let key = if is_picture {
                '#'
            } else {
                let style = Style::default().fg(cell.fg).bg(cell.bg).add_modifier(cell.modifier);
                let name = format!("{style:?}");
                if name == format!("{:?}", Style::default().fg(Color::Reset).bg(Color::Reset)) {
                    '.'
                } else {
                    let n = styles.len();
                    *styles
                        .entry(name)
                        .or_insert_with(|| KEYS.get(n).map(|&b| b as char).unwrap_or('?'))
                }
            };
            map.push(key);
        }
        text.push('\n');
        map.push('\n');
    }
    let mut legend: Vec<(char, String)> = styles.into_iter().map(|(s, k)| (k, s)).collect();
    legend.sort();
    let legend: String = legend.iter().map(|(k, s)| format!("{k}: {s}\n")).collect();
    format!("{text}--- styles ('.' default, '#' picture) ---\n{map}{legend}")
}

fn name(screen: Screen) -> &'static str {
    match screen {
        Screen::Explore => "explore",
        Screen::Train => "train",
        Screen::GradCam => "gradcam",
        Screen::Compare => "compare",
        Screen::Filters => "filters",
    }
}

#[test]
fn every_screen_at_both_sizes_in_colour_and_no_color() {
    for screen in Screen::ALL {
        for (w, h) in [(80u16, 24u16), (160, 48)] {
            for no_color in [false, true] {
                let (app, mut pictures) = fixture::state(screen, no_color);
                let buf = fixture::draw(&app, &mut pictures, w, h);
                let mode = if no_color { "nocolor" } else { "colour" };
                insta::assert_snapshot!(format!("{}_{w}x{h}_{mode}", name(screen)), render_text(&buf));
            }
        }
    }
}

#[test]
fn no_color_means_no_colour_anywhere() {
    for screen in Screen::ALL {
        let (app, mut pictures) = fixture::state(screen, true);
        let buf = fixture::draw(&app, &mut pictures, 160, 48);
        for cell in buf.content() {
            assert!(
                matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
                "{screen:?}: coloured cell {cell:?} under NO_COLOR"
            );
        }
    }
}

#[test]
fn pictures_are_drawn_as_coloured_half_blocks() {
    let (app, mut pictures) = fixture::state(Screen::GradCam, false);
    let buf = fixture::draw(&app, &mut pictures, 160, 48);
    // Half-block pictures colour both halves of a cell (fg and bg), whatever the symbol.
    let blocks: Vec<_> = buf
        .content()
        .iter()
        .filter(|c| matches!(c.fg, ratatui::style::Color::Rgb(..)) && matches!(c.bg, ratatui::style::Color::Rgb(..)))
        .collect();
    assert!(blocks.len() > 600, "only {} picture cells", blocks.len());
    let distinct: std::collections::HashSet<String> = blocks.iter().map(|c| format!("{:?}{:?}", c.fg, c.bg)).collect();
    assert!(
        distinct.len() > 4,
        "pictures should have several colours, got {}",
        distinct.len()
    );
}

#[test]
fn overlays_and_prompts() {
    let (mut app, mut pictures) = fixture::state(Screen::Train, false);
    app.help = true;
    insta::assert_snapshot!("help_80x24", render_text(&fixture::draw(&app, &mut pictures, 80, 24)));
    app.help = false;
    app.confirm_quit = true;
    insta::assert_snapshot!(
        "confirm_80x24",
        render_text(&fixture::draw(&app, &mut pictures, 80, 24))
    );
    app.confirm_quit = false;
    let small = fixture::draw(&app, &mut pictures, 79, 30);
    let text: String = small.content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("make the window larger"), "{text}");
    let small = fixture::draw(&app, &mut pictures, 120, 23);
    let text: String = small.content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("this window is 120×23"), "{text}");
}

#[test]
fn empty_states_explain_themselves() {
    let (mut app, mut pictures) = fixture::state(Screen::GradCam, false);
    app.cam.models.clear();
    app.cam.shown = None;
    app.summary = None;
    app.state = RunState::Preparing;
    let text = |app: &flowercam::tui::app::App, pictures: &mut flowercam::tui::pictures::Pictures| -> String {
        let buf = fixture::draw(app, pictures, 120, 30);
        (0..30)
            .map(|y| (0..120).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n")
            .collect()
    };
    assert!(text(&app, &mut pictures).contains("feature extraction has finished"));
    app.screen = Screen::Compare;
    assert!(text(&app, &mut pictures).contains("fills in as training phases finish"));
    app.screen = Screen::Train;
    app.phases.clear();
    app.current = None;
    assert!(text(&app, &mut pictures).contains("epoch rows appear as epochs finish"));
}
