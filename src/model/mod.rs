//! The network: ResNet with named stages, and where its weights come from.

pub mod conv;
pub mod resnet;
pub mod weights;

use std::path::{Path, PathBuf};

pub use resnet::{Arch, BnTrain, ConvPath, ResNet, Stage};

/// torchvision's ImageNet1K_V1 ResNet-18 file name (the hash prefix is part of it).
pub const TORCH_HUB_FILE: &str = "resnet18-f37072fd.pth";
/// The same tensors on the Hugging Face hub.
pub const HF_REPO: &str = "timm/resnet18.tv_in1k";

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn xdg_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cache")))
}

/// Where PyTorch keeps hub checkpoints (`$TORCH_HOME/hub/checkpoints`).
pub fn torch_hub_dir() -> Option<PathBuf> {
    let torch_home = std::env::var_os("TORCH_HOME")
        .map(PathBuf::from)
        .or_else(|| xdg_cache().map(|c| c.join("torch")));
    torch_home.map(|t| t.join("hub").join("checkpoints"))
}

/// Where the Hugging Face libraries keep downloads (`$HF_HUB_CACHE`, `$HF_HOME/hub`).
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(c) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(c));
    }
    let hf_home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .or_else(|| xdg_cache().map(|c| c.join("huggingface")));
    hf_home.map(|h| h.join("hub"))
}

/// flowercam's own download location for the hub file.
pub fn own_cache_file() -> Option<PathBuf> {
    xdg_cache().map(|c| c.join("flowercam").join("resnet18.tv_in1k.safetensors"))
}

/// Existing pretrained ResNet-18 weights in the usual caches, in lookup order:
/// torch hub cache, Hugging Face cache (any snapshot), flowercam's cache.
pub fn find_cached_weights() -> Option<PathBuf> {
    if let Some(p) = torch_hub_dir().map(|d| d.join(TORCH_HUB_FILE)).filter(|p| p.is_file()) {
        return Some(p);
    }
    if let Some(snapshots) = hf_cache_dir().map(|d| {
        d.join(format!("models--{}", HF_REPO.replace('/', "--")))
            .join("snapshots")
    }) && let Ok(entries) = std::fs::read_dir(&snapshots)
    {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("model.safetensors"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Some(p);
        }
    }
    own_cache_file().filter(|p| p.is_file())
}

/// The hub URL of the safetensors file (`HF_ENDPOINT` selects a mirror).
pub fn hub_url() -> String {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_string());
    format!(
        "{}/{HF_REPO}/resolve/main/model.safetensors",
        endpoint.trim_end_matches('/')
    )
}

/// What `--weights` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsChoice {
    /// torchvision's random initialisation.
    Random,
    File(PathBuf),
}

/// Resolve the `--weights` setting: `none`, a path, or `auto` (caches, then
/// a download with `progress`). Offline with nothing found is one clear message.
pub fn resolve_weights(setting: &str, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<WeightsChoice, String> {
    match setting {
        "none" => Ok(WeightsChoice::Random),
        "auto" => {
            if let Some(p) = find_cached_weights() {
                return Ok(WeightsChoice::File(p));
            }
            let dest = own_cache_file().ok_or("cannot find a cache folder (HOME is not set); pass --weights FILE")?;
            let url = hub_url();
            crate::data::fetch::download(&url, &dest, None, progress).map_err(|e| {
                let hub = torch_hub_dir().map(|d| d.join(TORCH_HUB_FILE).display().to_string()).unwrap_or_else(|| TORCH_HUB_FILE.into());
                format!(
                    "no pretrained ResNet-18 weights found and the download failed ({e}).\n\
                     Put torchvision's {TORCH_HUB_FILE} at {hub}, or {HF_REPO}'s model.safetensors anywhere and pass --weights FILE.\n\
                     `flowercam demo` runs offline with random weights."
                )
            })?;
            Ok(WeightsChoice::File(dest))
        }
        path => {
            let p = Path::new(path);
            if p.is_file() {
                Ok(WeightsChoice::File(p.to_owned()))
            } else {
                Err(format!(
                    "--weights {path}: no such file (use `auto`, `none` or a .pth/.safetensors path)"
                ))
            }
        }
    }
}

/// The network the configuration asks for: `model.arch` with `model.weights`
/// resolved (file, caches, download with `progress`, or random with
/// `num_classes_if_random` outputs), plus a checkpoint's class names.
pub fn load_configured(
    config: &crate::config::Config,
    device: &candle_core::Device,
    num_classes_if_random: usize,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(ResNet, weights::ClassNames), String> {
    let arch =
        Arch::from_name(&config.model.arch).ok_or_else(|| format!("model.arch {:?} is unknown", config.model.arch))?;
    let conv_path = ConvPath::from_name(&config.model.conv)
        .ok_or_else(|| format!("model.conv {:?} is unknown", config.model.conv))?;
    let (mut model, classes) = match resolve_weights(&config.model.weights, progress)? {
        WeightsChoice::Random => (
            weights::random(arch, num_classes_if_random, config.seed, device).map_err(|e| e.to_string())?,
            None,
        ),
        WeightsChoice::File(path) => {
            tracing::info!("loading weights from {}", path.display());
            weights::load(&path, arch, device).map_err(|e| e.to_string())?
        }
    };
    model.conv_path = conv_path;
    Ok((model, classes))
}
