//! flowercam: transfer learning you can trust, in the terminal.
//!
//! The engine (data, model, training, Grad-CAM) knows nothing about the
//! terminal; the binary in `main.rs` wires it to the command line.

pub mod bench;
pub mod browse;
pub mod cam;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod headless;
pub mod model;
pub mod predict;
pub mod report;
pub mod train;
pub mod tui;
pub mod workflow;
