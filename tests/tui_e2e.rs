//! The real binary in a real terminal: `flowercam demo` inside tmux, driven
//! with send-keys and read with capture-pane. Needs tmux; `.ci/run` installs
//! it and sets FLOWERCAM_REQUIRE_TMUX so a missing tmux fails there instead
//! of skipping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "e2e"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }

    /// Wait until the pane shows `what`; panics with the screen on timeout.
    fn wait_for(&self, what: &dyn Fn(&str) -> bool, label: &str, secs: u64) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if what(&s) {
                return s;
            }
            if t.elapsed() > Duration::from_secs(secs) {
                panic!("timed out after {secs} s waiting for {label}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_run(runs: &Path) -> PathBuf {
    std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("config.toml").exists())
        .expect("a run folder")
}

#[test]
fn demo_in_tmux_trains_browses_and_restores_the_terminal() {
    if !tmux_available() {
        assert!(
            std::env::var_os("FLOWERCAM_REQUIRE_TMUX").is_none(),
            "tmux is required here (FLOWERCAM_REQUIRE_TMUX is set) but not installed"
        );
        eprintln!("skipping: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock"),
    };
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        "bash --norc --noprofile",
    ]);
    let bin = env!("CARGO_BIN_EXE_flowercam");
    let line = format!(
        "cd {} && {bin} demo --graphics halfblocks --out runs --epochs 2; echo EXIT=$?",
        dir.path().display()
    );
    tmux.keys(&[&line, "Enter"]);

    // The dashboard opens on the Train screen; epoch rows appear.
    tmux.wait_for(&|s| s.contains("Epochs") && s.contains("FE  1"), "FE epoch rows", 300);
    // Grad-CAM screen: the class list, then the first class's views once FE is done.
    tmux.keys(&["3"]);
    tmux.wait_for(
        &|s| s.contains("acc") && s.contains("focus"),
        "the Grad-CAM class list",
        30,
    );
    // The status line (second row) says when the workflow is done.
    let done = |s: &str| s.lines().nth(1).is_some_and(|l| l.starts_with("finished ·"));
    tmux.wait_for(&done, "the end of the workflow", 400);
    tmux.wait_for(
        &|s| s.contains("FT Grad-CAM") && s.contains("1/"),
        "FE and FT overlays",
        60,
    );
    // j moves to the next class: its name titles the sample panel.
    tmux.keys(&["j"]);
    tmux.wait_for(
        &|s| s.lines().any(|l| l.contains("globe thistle ·")),
        "the second class selected",
        60,
    );
    tmux.keys(&["l"]);
    tmux.wait_for(&|s| s.contains(" 2/"), "the second sample", 60);
    tmux.keys(&["?"]);
    tmux.wait_for(&|s| s.contains("keys") && s.contains("Ctrl-C"), "the help overlay", 10);
    // Esc closes it (then wait: Esc followed at once by q would read as Alt-q).
    tmux.keys(&["Escape"]);
    tmux.wait_for(&|s| !s.contains("Ctrl-C"), "the help overlay to close", 10);
    tmux.keys(&["q"]);
    // "EXIT=<digit>", not the typed "EXIT=$?".
    let exited = |s: &str| {
        s.match_indices("EXIT=")
            .any(|(i, _)| s[i + 5..].starts_with(|c: char| c.is_ascii_digit()))
    };
    let s = tmux.wait_for(&exited, "the shell prompt after quitting", 30);
    assert!(s.contains("EXIT=0"), "{s}");
    assert!(s.contains("flowercam: finished; results in"), "{s}");

    // The terminal is back to normal: no alternate screen, cooked mode with echo.
    assert_eq!(tmux.cmd(&["display", "-p", "-t", "e2e", "#{alternate_on}"]).trim(), "0");
    tmux.keys(&["stty -a > stty.txt", "Enter"]);
    let stty_file = dir.path().join("stty.txt");
    let t = Instant::now();
    while !std::fs::read_to_string(&stty_file).is_ok_and(|s| s.contains("icanon")) {
        assert!(t.elapsed() < Duration::from_secs(10), "stty did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stty = std::fs::read_to_string(&stty_file).unwrap();
    assert!(
        stty.contains(" icanon") && stty.contains(" echo "),
        "terminal left raw: {stty}"
    );

    let run = find_run(&dir.path().join("runs"));
    for f in common::RUN_FILES {
        assert!(run.join(f).is_file(), "{} lacks {f}", run.display());
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["finished"], true);
    assert_eq!(summary["fine_tuning"]["epochs"].as_array().map(|a| a.len()), Some(2));
    let log = dir.path().join("runs/flowercam.log");
    if let Ok(log) = std::fs::read_to_string(log) {
        assert!(!log.contains("ERROR"), "{log}");
    }
}

mod common;
