//! The Grad-CAM browser on a thread of its own, so computing a CAM never
//! blocks drawing or the keyboard. When the person holds a key, requests
//! pile up; only the newest `Show` is answered.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};

use candle_core::Device;
use image::RgbImage;

use crate::browse::{Browser, Query, SampleView};
use crate::config::Config;

/// What the UI asks.
#[derive(Debug)]
pub enum Request {
    /// Open the run (first time) or load its newest checkpoints.
    Load,
    Show(Query),
}

/// What comes back.
#[derive(Debug)]
pub enum Reply {
    Progress(usize, usize),
    /// Loaded: the models available and, the first time, thumbnails.
    Ready {
        models: Vec<&'static str>,
        thumbnails: Vec<(usize, RgbImage)>,
    },
    View(Box<SampleView>),
    Error(String),
}

/// Start the thread; it ends when the request sender is dropped.
pub fn spawn(
    run_dir: PathBuf,
    config: Config,
    device: Device,
    send: impl Fn(Reply) + Send + Sync + 'static,
) -> std::io::Result<Sender<Request>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("flowercam-browser".into())
        .spawn(move || serve(run_dir, config, device, rx, send))?;
    Ok(tx)
}

fn serve(run_dir: PathBuf, config: Config, device: Device, rx: Receiver<Request>, send: impl Fn(Reply) + Sync) {
    let mut browser: Option<Browser> = None;
    while let Ok(first) = rx.recv() {
        // Coalesce: of several queued Shows only the last matters.
        let mut queue = vec![first];
        queue.extend(rx.try_iter());
        let last_show = queue.iter().rposition(|r| matches!(r, Request::Show(_)));
        for (i, request) in queue.into_iter().enumerate() {
            match request {
                Request::Load => {
                    let result = match browser.as_mut() {
                        Some(b) => b.reload(&run_dir).map(|()| Vec::new()),
                        None => {
                            Browser::open(&run_dir, &config, &device, &|d, t| send(Reply::Progress(d, t))).map(|b| {
                                let thumbs = b.thumbnails(96);
                                browser = Some(b);
                                thumbs
                            })
                        }
                    };
                    match (result, browser.as_ref()) {
                        (Ok(thumbnails), Some(b)) => send(Reply::Ready {
                            models: b.model_names(),
                            thumbnails,
                        }),
                        (Err(e), _) => send(Reply::Error(e)),
                        (Ok(_), None) => {}
                    }
                }
                Request::Show(q) if Some(i) == last_show => {
                    if let Some(b) = browser.as_mut() {
                        match b.show(q) {
                            Ok(v) => send(Reply::View(Box::new(v))),
                            Err(e) => send(Reply::Error(e)),
                        }
                    }
                }
                Request::Show(_) => {}
            }
        }
    }
}
