//! Downloads that survive bad networks: resumable (HTTP Range) into a `.part`
//! file, MD5-verified, renamed into place only when whole; archives are
//! extracted into a temporary folder and renamed into place. Used by
//! `flowercam fetch` for Flowers102 and by the model for pretrained weights.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

/// The official Flowers102 files, relative to a base URL.
pub const FLOWERS_BASE_URL: &str = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/";

/// One file to fetch: name under the base URL and its published MD5.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile {
    pub name: &'static str,
    pub md5: Option<&'static str>,
}

/// The files `flowercam fetch` downloads, in order. The segmentations have no
/// published checksum; their length is still checked against the server's.
pub const FLOWERS_FILES: [RemoteFile; 4] = [
    RemoteFile {
        name: "imagelabels.mat",
        md5: Some("e0620be6f572b9609742df49c70aed4d"),
    },
    RemoteFile {
        name: "setid.mat",
        md5: Some("a5357ecc9cb78c4bef273ce3793fc85c"),
    },
    RemoteFile {
        name: "102flowers.tgz",
        md5: Some("52808999861908f626f3c1f4e79d11fa"),
    },
    RemoteFile {
        name: "102segmentations.tgz",
        md5: None,
    },
];

/// A download or extraction problem, naming the URL or file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: checksum mismatch (expected MD5 {expected}, got {actual}); the bad file was deleted, run again to re-download"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

/// MD5 of a file, hex.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(None)
        .http_status_as_error(false)
        .build()
        .into()
}

/// Download `url` to `dest`, resuming a previous `dest.part`, checking `md5`.
/// `progress(bytes so far, total if known)` is called as data arrives.
/// Nothing appears at `dest` unless the download is whole and verified.
pub fn download(
    url: &str,
    dest: &Path,
    md5: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), FetchError> {
    let part = PathBuf::from(format!("{}.part", dest.display()));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let http = |message: String| FetchError::Http {
        url: url.to_string(),
        message,
    };
    let mut request = agent().get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = request.call().map_err(|e| http(e.to_string()))?;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut file, mut done, total) = match status {
        206 => {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&part)
                .map_err(io_err(&part))?;
            (Some(f), have, length.map(|l| l + have))
        }
        200 => (Some(std::fs::File::create(&part).map_err(io_err(&part))?), 0, length),
        // The part file already holds everything the server has.
        416 if have > 0 => (None, have, Some(have)),
        _ => return Err(http(format!("server answered HTTP {status}"))),
    };
    progress(done, total);
    if let Some(f) = file.as_mut() {
        let mut body = response.into_body();
        let mut reader = body.as_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| {
                http(format!(
                    "connection broke after {done} bytes ({e}); run again to resume"
                ))
            })?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n]).map_err(io_err(&part))?;
            done += n as u64;
            progress(done, total);
        }
        f.sync_all().map_err(io_err(&part))?;
    }
    if let Some(total) = total
        && done < total
    {
        return Err(http(format!(
            "connection closed after {done} of {total} bytes; run again to resume"
        )));
    }
    if let Some(expected) = md5 {
        let actual = md5_file(&part).map_err(io_err(&part))?;
        if actual != expected {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::Checksum {
                path: dest.to_owned(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    std::fs::rename(&part, dest).map_err(io_err(dest))
}

/// Is `path` present and, when a checksum is known, verified?
pub fn verified(path: &Path, md5: Option<&str>) -> bool {
    path.is_file() && md5.is_none_or(|m| md5_file(path).is_ok_and(|a| a == m))
}

/// Extract a `.tgz` into `dest_dir`: unpack into a temporary folder beside
/// it, then move each top-level entry into place, so an interrupted
/// extraction never leaves a half-filled `jpg/`.
pub fn extract_tgz(archive: &Path, dest_dir: &Path) -> Result<Vec<PathBuf>, FetchError> {
    let tmp = tempfile::Builder::new()
        .prefix(".flowercam-extract-")
        .tempdir_in(dest_dir)
        .map_err(io_err(dest_dir))?;
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    tar.unpack(tmp.path()).map_err(io_err(archive))?;
    let mut placed = Vec::new();
    for entry in std::fs::read_dir(tmp.path()).map_err(io_err(tmp.path()))? {
        let entry = entry.map_err(io_err(tmp.path()))?;
        let target = dest_dir.join(entry.file_name());
        if target.exists() {
            let _ = std::fs::remove_dir_all(&target);
        }
        std::fs::rename(entry.path(), &target).map_err(io_err(&target))?;
        placed.push(target);
    }
    Ok(placed)
}

/// What `fetch_flowers` did with each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyThere(&'static str),
    Downloaded(&'static str),
}

/// Fetch Flowers102 `files` (normally [`FLOWERS_FILES`], less the
/// segmentations if unwanted) into `dir`, the `flowers-102` folder itself.
/// Verified files and already-extracted folders are skipped.
pub fn fetch_flowers(
    base_url: &str,
    dir: &Path,
    files: &[RemoteFile],
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<Vec<FetchOutcome>, FetchError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut outcomes = Vec::new();
    for &file in files {
        let is_archive = file.name.ends_with(".tgz");
        let extracted = match file.name {
            "102flowers.tgz" => Some(dir.join("jpg")),
            "102segmentations.tgz" => Some(dir.join("segmim")),
            _ => None,
        };
        let dest = dir.join(file.name);
        if extracted.as_ref().is_some_and(|d| d.is_dir()) || (!is_archive && verified(&dest, file.md5)) {
            outcomes.push(FetchOutcome::AlreadyThere(file.name));
            continue;
        }
        if !(is_archive && verified(&dest, file.md5)) {
            let url = format!("{}/{}", base_url.trim_end_matches('/'), file.name);
            download(&url, &dest, file.md5, &mut |done, total| {
                progress(file.name, done, total)
            })?;
        }
        if is_archive {
            extract_tgz(&dest, dir)?;
            // The images are what we keep; the archive is 330 MB of duplicates.
            std::fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
        outcomes.push(FetchOutcome::Downloaded(file.name));
    }
    Ok(outcomes)
}
