//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// Where the committed fixtures live.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn key_seed(key: &str) -> u64 {
    key.bytes()
        .enumerate()
        .map(|(i, b)| (i as u64 + 1) * b as u64)
        .sum::<u64>()
        % 9973
}

/// The Rust twin of `formula` in tests/fixtures/make_fixtures.py.
pub fn formula(key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let s = key_seed(key) as f64;
    (0..n)
        .map(|i| {
            let x = (i as f64 * 0.61803 + s * 0.1234).sin();
            let v = if key.ends_with("running_var") {
                0.75 + 0.25 * x
            } else if key.ends_with("running_mean") {
                0.1 * x
            } else if key == "fc.weight" {
                x / (shape[1] as f64).sqrt()
            } else if key == "fc.bias" {
                0.1 * x
            } else if shape.len() == 4 {
                x * (2.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt()
            } else if key.ends_with("weight") {
                1.0 + 0.2 * x
            } else {
                0.1 * x
            };
            v as f32
        })
        .collect()
}

/// Every key and shape of torchvision's resnet18 state dict (no num_batches_tracked).
pub fn resnet18_keys() -> Vec<(String, Vec<usize>)> {
    let mut keys = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let bn = |keys: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{p}.{s}"), vec![c]));
        }
    };
    bn(&mut keys, "bn1", 64);
    let widths = [64, 128, 256, 512];
    let mut cin = 64;
    for (li, &w) in widths.iter().enumerate() {
        for b in 0..2 {
            let p = format!("layer{}.{b}", li + 1);
            let c_in = if b == 0 { cin } else { w };
            keys.push((format!("{p}.conv1.weight"), vec![w, c_in, 3, 3]));
            bn(&mut keys, &format!("{p}.bn1"), w);
            keys.push((format!("{p}.conv2.weight"), vec![w, w, 3, 3]));
            bn(&mut keys, &format!("{p}.bn2"), w);
            if b == 0 && li > 0 {
                keys.push((format!("{p}.downsample.0.weight"), vec![w, c_in, 1, 1]));
                bn(&mut keys, &format!("{p}.downsample.1"), w);
            }
        }
        cin = w;
    }
    keys.push(("fc.weight".into(), vec![1000, 512]));
    keys.push(("fc.bias".into(), vec![1000]));
    keys
}

/// Write the formula weights as a safetensors file (what the fixture's model holds).
pub fn write_formula_weights(path: &Path, skip: Option<&str>, reshape: Option<(&str, Vec<usize>)>) {
    let mut map = std::collections::HashMap::new();
    for (k, shape) in resnet18_keys() {
        if Some(k.as_str()) == skip {
            continue;
        }
        let shape = match &reshape {
            Some((rk, s)) if *rk == k => s.clone(),
            _ => shape,
        };
        let t = Tensor::from_vec(formula(&k, &shape), shape, &Device::Cpu).unwrap();
        map.insert(k, t);
    }
    candle_core::safetensors::save(&map, path).unwrap();
}

/// Largest absolute difference relative to the reference's largest magnitude.
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    let g: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let w: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

/// A tiny HTTP/1.1 file server on 127.0.0.1 for download tests. It honours
/// `Range: bytes=N-`, and can break the first response after `cut` bytes.
pub struct TestServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn start(files: Vec<(&str, Vec<u8>)>, cut: Option<usize>) -> TestServer {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: std::collections::HashMap<String, Vec<u8>> =
            files.into_iter().map(|(k, v)| (format!("/{k}"), v)).collect();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            let mut cut = cut;
            // Bounded: a test never needs more than a few dozen requests.
            for stream in listener.incoming().take(64) {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut range_start = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(r) = lower.strip_prefix("range: bytes=") {
                        range_start = r.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                log.lock().unwrap().push(format!("{path} {range_start:?}"));
                let Some(body) = files.get(&path) else {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                };
                let (status, start) = match range_start {
                    Some(s) if s >= body.len() => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        continue;
                    }
                    Some(s) => ("206 Partial Content", s),
                    None => ("200 OK", 0),
                };
                let rest = &body[start..];
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    rest.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let send = match cut.take() {
                    Some(n) => &rest[..n.min(rest.len())],
                    None => rest,
                };
                let _ = stream.write_all(send);
                let _ = stream.flush();
            }
        });
        TestServer { url, requests }
    }
}

/// MD5 of bytes, hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(bytes))
}

/// The files a finished run folder holds.
pub const RUN_FILES: [&str; 11] = [
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    "fe.safetensors",
    "ft.safetensors",
    "curves.png",
    "gradcam_fe.png",
    "gradcam_compare.png",
    "filters_conv1.png",
    "activations_layer4.png",
    "report.md",
];
