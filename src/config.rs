//! The resolved configuration: built-in defaults (`config/default.toml`), then
//! a `--config FILE`, then command-line flags. Every knob the code reads lives
//! here, so a run directory's `config.toml` is enough to reproduce a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The defaults ship inside the binary so that `flowercam` works from any
/// directory and the file a user copies is the one the code reads.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Everything a run needs to know, after layering.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: String,
    pub seed: u64,
    pub device: String,
    pub threads: usize,
    pub data: DataConfig,
    pub image: ImageConfig,
    pub augment: AugmentConfig,
    pub train: TrainConfig,
    pub model: ModelConfig,
    pub cam: CamConfig,
    pub output: OutputConfig,
}

/// Where the images are and which classes to use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub root: PathBuf,
    pub format: DataFormat,
    pub classes: Vec<String>,
    pub preset: ClassPreset,
    pub test_fraction: f64,
}

/// Which reader to use for `data.root`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    Auto,
    Flowers102,
    ImageFolder,
}

/// How Flowers102 classes are chosen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClassPreset {
    /// By official name, from `data.classes`.
    Names,
    /// The seed notebook's literal 0-indexed labels, for reproducing its numbers.
    Notebook,
}

/// Geometry and normalisation of network inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    pub resize: u32,
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Training-time augmentation, as the notebook's torchvision transforms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    pub scale: [f64; 2],
    pub ratio: [f64; 2],
    pub flip: f64,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

/// The two training phases and what they share.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub batchnorm: BatchNormMode,
    pub feature_extraction: PhaseConfig,
    pub fine_tuning: PhaseConfig,
}

/// Whether frozen stages keep eval-mode BatchNorm.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BatchNormMode {
    FrozenEval,
    Notebook,
}

/// One training phase: what learns, how fast, for how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PhaseConfig {
    pub epochs: usize,
    pub trainable: Vec<String>,
    pub lr: BTreeMap<String, f64>,
    pub weight_decay: f64,
}

/// Architecture and where its weights come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: String,
    pub weights: String,
    /// "fast" (flowercam's CPU convolutions, frozen BatchNorm folded) or
    /// "stock" (Candle's conv2d): the reference the fast path is checked
    /// and benchmarked against.
    pub conv: String,
}

/// Grad-CAM settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CamConfig {
    pub method: String,
    pub layer: String,
    pub target: String,
    pub focus_threshold: f64,
    pub colormap: String,
}

/// Where results go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub dir: PathBuf,
}

/// A configuration problem, always naming the key and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Key {
        origin: String,
        key: String,
        message: String,
    },
}

/// The stage names a phase may train, in network order.
pub const STAGES: [&str; 5] = ["layer1", "layer2", "layer3", "layer4", "fc"];

impl Config {
    /// The built-in defaults.
    pub fn defaults() -> Config {
        Self::from_layers(&[]).expect("built-in config/default.toml is valid")
    }

    /// Defaults overlaid with the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_layers(&[(path.display().to_string(), text)])
    }

    /// Defaults overlaid with each `(origin, toml text)` in order. Unknown keys
    /// and bad values are reported against the layer that introduced them.
    pub fn from_layers(layers: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut merged = parse_table("built-in defaults", DEFAULT_TOML)?;
        let mut origin = "built-in defaults".to_string();
        for (name, text) in layers {
            let table = parse_table(name, text)?;
            // Check this layer on its own first, so an unknown key names its file.
            check_keys(name, &table, &merged, "")?;
            merge(&mut merged, table);
            origin = name.clone();
        }
        let de = toml::Value::Table(merged);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Key {
            origin: origin.clone(),
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Key { origin, key, message })?;
        Ok(config)
    }

    /// Range and consistency checks serde cannot express.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if self.image.size == 0 || self.image.size > self.image.resize {
            return err(
                "image.size",
                format!("must be between 1 and image.resize ({})", self.image.resize),
            );
        }
        if self.image.std.iter().any(|s| *s <= 0.0) {
            return err("image.std", "every entry must be positive".into());
        }
        let [lo, hi] = self.augment.scale;
        if !(0.0 < lo && lo <= hi && hi <= 1.0) {
            return err("augment.scale", format!("need 0 < min <= max <= 1, got [{lo}, {hi}]"));
        }
        let [lo, hi] = self.augment.ratio;
        if !(0.0 < lo && lo <= hi) {
            return err("augment.ratio", format!("need 0 < min <= max, got [{lo}, {hi}]"));
        }
        if !(0.0..=1.0).contains(&self.augment.flip) {
            return err("augment.flip", "is a probability, between 0 and 1".into());
        }
        for (k, v) in [
            ("augment.brightness", self.augment.brightness),
            ("augment.contrast", self.augment.contrast),
            ("augment.saturation", self.augment.saturation),
        ] {
            if !(0.0..1.0).contains(&v) {
                return err(k, format!("must be in [0, 1), got {v}"));
            }
        }
        if !(0.0 < self.data.test_fraction && self.data.test_fraction < 1.0) {
            return err("data.test_fraction", "must be strictly between 0 and 1".into());
        }
        if self.data.preset == ClassPreset::Names && self.data.classes.is_empty() {
            return err("data.classes", "names no class".into());
        }
        if self.train.batch_size == 0 {
            return err("train.batch_size", "must be at least 1".into());
        }
        for (name, phase) in [
            ("feature_extraction", &self.train.feature_extraction),
            ("fine_tuning", &self.train.fine_tuning),
        ] {
            let key = format!("train.{name}");
            if phase.trainable.is_empty() {
                return err(&format!("{key}.trainable"), "names no stage".into());
            }
            for stage in &phase.trainable {
                if !STAGES.contains(&stage.as_str()) {
                    return err(
                        &format!("{key}.trainable"),
                        format!("unknown stage {stage:?}, expected one of {STAGES:?}"),
                    );
                }
                match phase.lr.get(stage) {
                    Some(lr) if *lr > 0.0 && lr.is_finite() => {}
                    Some(lr) => {
                        return err(
                            &format!("{key}.lr.{stage}"),
                            format!("must be a positive number, got {lr}"),
                        );
                    }
                    None => {
                        return err(
                            &format!("{key}.lr"),
                            format!("gives no learning rate for trainable stage {stage:?}"),
                        );
                    }
                }
            }
            if let Some(extra) = phase.lr.keys().find(|k| !phase.trainable.contains(k)) {
                return err(
                    &format!("{key}.lr.{extra}"),
                    "is set but that stage is not trainable".into(),
                );
            }
            if phase.weight_decay < 0.0 {
                return err(&format!("{key}.weight_decay"), "must not be negative".into());
            }
        }
        if !["resnet18", "resnet34"].contains(&self.model.arch.as_str()) {
            return err(
                "model.arch",
                format!(
                    "unknown architecture {:?}, expected resnet18 or resnet34",
                    self.model.arch
                ),
            );
        }
        if crate::model::ConvPath::from_name(&self.model.conv).is_none() {
            return err(
                "model.conv",
                format!("unknown convolution path {:?}, expected fast or stock", self.model.conv),
            );
        }
        if !["gradcam", "gradcam++", "hirescam", "eigencam"].contains(&self.cam.method.as_str()) {
            return err(
                "cam.method",
                format!(
                    "unknown method {:?}, expected gradcam, gradcam++, hirescam or eigencam",
                    self.cam.method
                ),
            );
        }
        if !["layer1", "layer2", "layer3", "layer4"].contains(&self.cam.layer.as_str()) {
            return err(
                "cam.layer",
                format!("unknown stage {:?}, expected layer1..layer4", self.cam.layer),
            );
        }
        if !["true", "predicted"].contains(&self.cam.target.as_str()) {
            return err(
                "cam.target",
                format!("expected \"true\" or \"predicted\", got {:?}", self.cam.target),
            );
        }
        if !["jet", "turbo"].contains(&self.cam.colormap.as_str()) {
            return err(
                "cam.colormap",
                format!("expected \"jet\" or \"turbo\", got {:?}", self.cam.colormap),
            );
        }
        if !(0.0..=1.0).contains(&self.cam.focus_threshold) {
            return err("cam.focus_threshold", "must be between 0 and 1".into());
        }
        crate::device::parse_device(&self.device).map_err(|m| ("device".to_string(), m))?;
        Ok(())
    }

    /// The resolved configuration as TOML, for the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Reject keys the defaults do not have. Maps whose keys are data (learning
/// rates per stage) are let through; validation checks their keys instead.
fn check_keys(origin: &str, layer: &toml::Table, base: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(known) = base.get(key) else {
            let candidates: Vec<&str> = base.keys().map(String::as_str).collect();
            let hint = closest(key, &candidates)
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(ConfigError::Key {
                origin: origin.to_string(),
                key: path,
                message: format!("unknown key{hint}"),
            });
        };
        if let (toml::Value::Table(sub), toml::Value::Table(known_sub)) = (value, known)
            && !path.ends_with(".lr")
        {
            check_keys(origin, sub, known_sub, &path)?;
        }
    }
    Ok(())
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            // Learning-rate maps are replaced whole: their keys must match `trainable`.
            (Some(toml::Value::Table(b)), toml::Value::Table(v)) if key != "lr" => merge(b, v),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// The candidate closest to `word` by edit distance, if it is plausibly a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(word, c), *c))
        .filter(|(score, _)| *score > 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(&[("my.toml".to_string(), text.to_string())])
    }

    #[test]
    fn defaults_match_the_notebook() {
        let c = Config::defaults();
        assert_eq!(c.image.size, 224);
        assert_eq!(c.image.resize, 256);
        assert_eq!(c.train.batch_size, 32);
        assert_eq!(c.train.feature_extraction.epochs, 15);
        assert_eq!(c.train.fine_tuning.lr["layer4"], 1e-4);
        assert_eq!(c.train.fine_tuning.lr["fc"], 1e-3);
        assert_eq!(c.data.classes.len(), 8);
    }

    #[test]
    fn a_layer_overrides_only_what_it_names() {
        let c = layer("seed = 7\n[train.fine_tuning]\nepochs = 3\n").unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.train.fine_tuning.epochs, 3);
        assert_eq!(c.train.fine_tuning.trainable, vec!["layer4", "fc"]);
        assert_eq!(c.train.feature_extraction.epochs, 15);
    }

    #[test]
    fn unknown_key_names_file_and_key_and_suggests() {
        let e = layer("[train]\nbatch_sise = 3\n").unwrap_err().to_string();
        assert!(e.contains("my.toml"), "{e}");
        assert!(e.contains("train.batch_sise"), "{e}");
        assert!(e.contains("batch_size"), "{e}");
    }

    #[test]
    fn bad_value_names_file_and_key() {
        let e = layer("[train]\nbatch_size = \"big\"\n").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("train.batch_size"), "{e}");
        let e = layer("[augment]\nscale = [0.9, 0.1]\n").unwrap_err().to_string();
        assert!(e.contains("augment.scale"), "{e}");
        let e = layer("[train.fine_tuning]\nlr = { fc = 1e-3 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.fine_tuning.lr"), "{e}");
        let e = layer("device = \"tpu\"\n").unwrap_err().to_string();
        assert!(e.contains("`device`"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = layer("name = \"x\"\n").unwrap();
        let again = layer(&c.to_toml()).unwrap();
        assert_eq!(c, again);
    }
}
