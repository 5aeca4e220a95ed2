//! The real binary, driven from outside as a person would: synth → explore
//! → run → predict, and the errors a person sees.

use std::path::Path;
use std::process::{Command, Output};

fn flowercam(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowercam"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SMALL: &str = "[image]\nresize = 56\nsize = 48\n[train]\nbatch_size = 8\n";

#[test]
fn synth_run_predict_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("small.toml"), SMALL).unwrap();
    let o = flowercam(
        &[
            "synth",
            "--out",
            "data",
            "--images-per-class",
            "8",
            "--size",
            "48",
            "--shortcut",
            "wild pansy",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = flowercam(&["explore", "--data", "data"], d);
    assert!(
        o.status.success() && text(&o).contains("wild pansy") && text(&o).contains("total"),
        "{}",
        text(&o)
    );

    let o = flowercam(
        &[
            "run",
            "--data",
            "data",
            "--weights",
            "none",
            "--headless",
            "--out",
            "runs",
            "--epochs",
            "1",
            "--config",
            "small.toml",
        ],
        d,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Epoch  1/1") && out.contains("ACCURACY COMPARISON"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "headless output has no escape codes");
    let runs: Vec<_> = std::fs::read_dir(d.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    for f in common::RUN_FILES {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for phase in ["feature_extraction", "fine_tuning"] {
        let p = &summary[phase];
        assert!(p["final_test_acc"].as_f64().is_some(), "{phase}");
        assert_eq!(p["per_class_acc"].as_array().unwrap().len(), 8);
        let e = &p["epochs"][0];
        for k in ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"] {
            assert!(e.get(k).is_some(), "{phase} epoch lacks {k}");
        }
    }
    assert_eq!(summary["classes"].as_array().unwrap().len(), 8);
    for k in ["feature_extraction", "fine_tuning", "total"] {
        assert!(summary["timings"][k].as_f64().is_some(), "timings.{k}");
    }
    assert!(summary["focus"]["fine_tuning"].as_array().is_some_and(|a| a.len() == 8));
    assert_eq!(summary["finished"], true);
    // The resolved config reproduces the run.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("size = 48"), "{resolved}");

    let img = d.join("data/jpg/image_00001.jpg");
    let ft = run.join("ft.safetensors");
    let o = flowercam(
        &[
            "predict",
            img.to_str().unwrap(),
            "--weights",
            ft.to_str().unwrap(),
            "--json",
            "--top",
            "2",
            "--config",
            "small.toml",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["top"].as_array().unwrap().len(), 2);
    assert_eq!(line["logits"].as_array().unwrap().len(), 8);
    let class = line["top"][0]["class"].as_str().unwrap();
    assert!(
        summary["classes"].as_array().unwrap().iter().any(|c| c == class),
        "{class}"
    );

    // `view` without a terminal prints the report.
    let o = flowercam(&["view", run.to_str().unwrap()], d);
    assert!(
        o.status.success() && text(&o).contains("# flowercam run"),
        "{}",
        text(&o)
    );
    let o = flowercam(&["view", d.to_str().unwrap()], d);
    assert!(text(&o).contains("no summary.json here"), "{}", text(&o));

    browse_the_run(run, d);
}

/// The Grad-CAM browser behind the TUI, on the run just trained.
fn browse_the_run(run: &Path, d: &Path) {
    use flowercam::browse::{Browser, CamTarget, Query, SampleFilter, read_config, read_summary};
    use flowercam::cam::Method;
    let mut config = read_config(run).unwrap();
    config.data.root = d.join("data");
    let summary = read_summary(run).unwrap();
    let mut b = Browser::open(run, &config, &candle_core::Device::Cpu, &|_, _| {}).unwrap();
    assert_eq!(b.model_names(), vec!["FE", "FT"]);
    let preds = &summary.samples.predictions["fine_tuning"];
    assert_eq!(preds.len(), b.test_images().len());
    for class in 0..8 {
        let all = b.members(class, SampleFilter::All);
        let right = b.members(class, SampleFilter::Correct);
        let wrong = b.members(class, SampleFilter::Misclassified);
        assert_eq!(right.len() + wrong.len(), all.len());
        assert!(right.iter().all(|&i| preds[i].0 == class));
        assert!(wrong.iter().all(|&i| preds[i].0 != class));
    }
    let q = Query {
        class: 3,
        filter: SampleFilter::All,
        index: 5,
        target: CamTarget::Predicted,
        method: Method::GradCamPlusPlus,
    };
    let v = b.show(q).unwrap();
    let n = b.members(3, SampleFilter::All).len();
    assert_eq!(v.count, n);
    assert_eq!(v.query.index, 5 % n, "index wraps around");
    let idx = v.test_index.unwrap();
    assert_eq!(b.test_images()[idx].label, 3);
    assert_eq!(v.image.as_ref().unwrap().dimensions(), (48, 48));
    assert_eq!(v.models.len(), 2);
    for m in &v.models {
        assert_eq!(m.overlay.dimensions(), (48, 48));
        assert_eq!(m.target, m.predicted, "target = prediction when asked");
        assert!(
            m.focus.is_some_and(|f| (0.0..=1.0).contains(&f)),
            "synthetic images have masks"
        );
    }
    assert_eq!((v.models[1].predicted, v.models[1].confidence), preds[idx]);
    // Another method gives another map; the same query is answered from the cache identically.
    let eigen = b
        .show(Query {
            method: Method::EigenCam,
            ..q
        })
        .unwrap();
    assert_ne!(eigen.models[0].overlay, v.models[0].overlay);
    assert_eq!(b.show(q).unwrap().models[0].overlay, v.models[0].overlay);
    assert_eq!(b.thumbnails(32).len(), 8);
}

#[test]
fn errors_name_the_problem_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "[train]\nbatch_sise = 3\n").unwrap();
    let o = flowercam(&["explore", "--config", "bad.toml"], d);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("bad.toml") && t.contains("train.batch_sise") && !t.contains("BACKTRACE"),
        "{t}"
    );
    let o = flowercam(&["explore", "--data", "nowhere"], d);
    assert!(text(&o).contains("nowhere: no such folder"), "{}", text(&o));
    let o = flowercam(&["predict", "x.jpg", "--weights", "missing.pth"], d);
    assert!(text(&o).contains("missing.pth: no such file"), "{}", text(&o));
    let o = flowercam(&["bench", "--device", "cuda"], d);
    assert!(!o.status.success());
    let o = flowercam(&["run", "--phases", "fe,lunch"], d);
    assert!(text(&o).contains("unknown phase \"lunch\""), "{}", text(&o));
}

mod common;

#[test]
fn auto_weights_come_from_the_hf_cache_or_a_download_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = d.join("w.safetensors");
    common::write_formula_weights(&weights, None, None);
    let bytes = std::fs::read(&weights).unwrap();
    let server = common::TestServer::start(
        vec![("timm/resnet18.tv_in1k/resolve/main/model.safetensors", bytes)],
        None,
    );
    image::RgbImage::from_pixel(40, 30, image::Rgb([200, 30, 90]))
        .save(d.join("x.png"))
        .unwrap();
    let home = d.join("home");
    let run = |extra: &[(&str, &std::path::Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowercam"));
        c.args(["predict", "x.png", "--weights", "auto", "--json", "--top", "1"])
            .current_dir(d);
        for v in ["XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME", "HF_HUB_CACHE"] {
            c.env_remove(v);
        }
        c.env("HOME", &home).env("HF_ENDPOINT", &server.url);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["logits"].as_array().unwrap().len(), 1000);
    assert!(home.join(".cache/flowercam/resnet18.tv_in1k.safetensors").is_file());
    assert_eq!(server.requests.lock().unwrap().len(), 1);
    // The second run finds the cached file and downloads nothing.
    assert!(run(&[]).status.success());
    assert_eq!(server.requests.lock().unwrap().len(), 1);
    // A Hugging Face cache snapshot is found too (the HF libraries' layout).
    let hf = d.join("hf");
    let snap = hf.join("hub/models--timm--resnet18.tv_in1k/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(&weights, snap.join("model.safetensors")).unwrap();
    std::fs::remove_file(home.join(".cache/flowercam/resnet18.tv_in1k.safetensors")).unwrap();
    assert!(run(&[("HF_HOME", &hf)]).status.success());
    assert_eq!(server.requests.lock().unwrap().len(), 1);
    // Offline with nothing cached: one clear message.
    drop(server);
    std::fs::remove_dir_all(&hf).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_flowercam"));
    let o = c
        .args(["predict", "x.png"])
        .current_dir(d)
        .env("HOME", d.join("empty"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("TORCH_HOME")
        .env_remove("HF_HOME")
        .env_remove("HF_HUB_CACHE")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("resnet18-f37072fd.pth") && t.contains("flowercam demo"),
        "{t}"
    );
}

/// Ctrl-C on a headless run: it stops after the current batch, keeps what
/// finished (summary.json says stopped) and exits 130, so a script can tell
/// it from a finished run.
#[test]
fn ctrl_c_stops_a_headless_run_with_status_130() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowercam"))
        .args(["demo", "--headless", "--out", "runs", "--epochs", "50"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Interrupt once training is under way.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let training = line.starts_with("Epoch");
        seen.push(line);
        if training {
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            break;
        }
    }
    seen.extend(lines.map(|l| l.unwrap()));
    let status = child.wait().unwrap();
    let out = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("stopped"), "{out}");
    let run = std::fs::read_dir(d.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("summary.json").exists())
        .expect("a run folder with summary.json");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["stopped"], serde_json::Value::Bool(true), "{summary}");
}
