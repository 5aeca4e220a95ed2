//! Entering and leaving full-screen mode. The terminal is restored when the
//! guard drops (normal exit, `?` errors), and by a panic hook if the UI
//! thread panics; panics on other threads never touch the screen (the
//! worker turns its own into a `Failed` event), they go to the log.

use std::io::{Stdout, Write, stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal flowercam draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static UI_THREAD: OnceLock<Mutex<Option<std::thread::ThreadId>>> = OnceLock::new();

/// Leave raw mode and the alternate screen (idempotent).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let mut out = stdout();
        let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
        let _ = out.flush();
    }
}

/// Restores the terminal when dropped.
pub struct Guard {
    pub terminal: Term,
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Enter raw mode and the alternate screen, with the panic hook in place.
pub fn enter() -> std::io::Result<Guard> {
    install_panic_hook();
    *UI_THREAD
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut out = stdout();
    if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(e);
    }
    match Terminal::new(CrosstermBackend::new(stdout())) {
        Ok(terminal) => Ok(Guard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = UI_THREAD
                .get()
                .and_then(|m| *m.lock().unwrap_or_else(|e| e.into_inner()))
                .is_some_and(|id| id == std::thread::current().id());
            if ACTIVE.load(Ordering::SeqCst) && !on_ui {
                // A worker thread: its panic becomes an on-screen error.
                tracing::error!("panic on thread {:?}: {info}", std::thread::current().name());
                return;
            }
            restore();
            previous(info);
        }));
    });
}
