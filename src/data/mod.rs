//! Everything that turns files on disk into training batches: dataset
//! readers, synthetic data, downloads, the decode-once cache, augmentation.

pub mod augment;
pub mod cache;
pub mod fetch;
pub mod flowers102;
pub mod image_folder;
pub mod matv5;
pub mod official;
pub mod synth;

use std::path::{Path, PathBuf};

use crate::config::{Config, DataFormat};

/// A dataset problem, always naming the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_owned(),
            source,
        }
    }
    pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// One image of the selected dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    /// Segmentation image (flower kept, background pure blue), when the dataset has one.
    pub mask: Option<PathBuf>,
}

/// A class as the rest of the program sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassInfo {
    pub name: String,
    /// The 0-indexed Flowers102 label (torchvision's), for Flowers102 data.
    pub source_label: Option<usize>,
}

/// The selected classes with their training and test images.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder the images were found in.
    pub root: PathBuf,
    /// "flowers102" or "image_folder", for display.
    pub format: &'static str,
    pub classes: Vec<ClassInfo>,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
}

/// One row of the class table (`flowercam explore`, the Explore screen).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassRow {
    pub name: String,
    pub label: Option<usize>,
    pub train: usize,
    pub test: usize,
    pub masks: usize,
}

impl Dataset {
    /// Per-class counts, in class order.
    pub fn class_table(&self) -> Vec<ClassRow> {
        let mut rows: Vec<ClassRow> = self
            .classes
            .iter()
            .map(|c| ClassRow {
                name: c.name.clone(),
                label: c.source_label,
                train: 0,
                test: 0,
                masks: 0,
            })
            .collect();
        for s in &self.train {
            rows[s.label].train += 1;
            rows[s.label].masks += s.mask.is_some() as usize;
        }
        for s in &self.test {
            rows[s.label].test += 1;
            rows[s.label].masks += s.mask.is_some() as usize;
        }
        rows
    }

    /// The class table as aligned text, as `flowercam explore` prints it.
    pub fn class_table_text(&self) -> String {
        let rows = self.class_table();
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let mut out = format!(
            "{:<width$}  {:>5}  {:>5}  {:>5}  {:>5}\n",
            "class", "label", "train", "test", "masks"
        );
        for r in &rows {
            let label = r.label.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
            out += &format!(
                "{:<width$}  {:>5}  {:>5}  {:>5}  {:>5}\n",
                r.name, label, r.train, r.test, r.masks
            );
        }
        let (tr, te, m) = rows
            .iter()
            .fold((0, 0, 0), |a, r| (a.0 + r.train, a.1 + r.test, a.2 + r.masks));
        out += &format!("{:<width$}  {:>5}  {:>5}  {:>5}  {:>5}\n", "total", "", tr, te, m);
        out
    }

    /// A dataset that cannot train is an error before any work starts.
    fn check_not_empty(&self) -> Result<(), DataError> {
        if self.classes.is_empty() {
            return Err(DataError::invalid(&self.root, "no classes selected"));
        }
        for row in self.class_table() {
            if row.train == 0 || row.test == 0 {
                return Err(DataError::invalid(
                    &self.root,
                    format!(
                        "class {:?} has {} training and {} test images; every class needs both",
                        row.name, row.train, row.test
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Open the dataset the configuration points at.
pub fn load(config: &Config) -> Result<Dataset, DataError> {
    let root = &config.data.root;
    if !root.exists() {
        return Err(DataError::invalid(
            root,
            "no such folder; run `flowercam fetch` to download Flowers102, `flowercam synth --out DIR` for a synthetic set, or pass --data DIR",
        ));
    }
    let format = match config.data.format {
        DataFormat::Auto if flowers102::locate(root).is_some() => DataFormat::Flowers102,
        DataFormat::Auto => DataFormat::ImageFolder,
        f => f,
    };
    let ds = match format {
        DataFormat::Flowers102 => flowers102::load(root, &flowers102::select_classes(&config.data)?)?,
        _ => image_folder::load(root, config.data.test_fraction, config.seed)?,
    };
    ds.check_not_empty()?;
    Ok(ds)
}
