//! The official Oxford Flowers102 layout (`jpg/`, `imagelabels.mat`,
//! `setid.mat`, optional `segmim/`), as downloaded by `flowercam fetch` or by
//! torchvision into `DIR/flowers-102/`. Labels come from the `.mat` file, so
//! only the selected images are ever decoded.

use std::path::{Path, PathBuf};

use super::official::{CLASS_NAMES, NOTEBOOK_LABELS};
use super::{ClassInfo, DataError, Dataset, Sample, matv5};
use crate::config::{ClassPreset, DataConfig};

/// Where the official files are under `root`: `root/flowers-102/` (torchvision)
/// or `root/` itself.
pub fn locate(root: &Path) -> Option<PathBuf> {
    [root.join("flowers-102"), root.to_owned()]
        .into_iter()
        .find(|dir| dir.join("imagelabels.mat").is_file() && dir.join("setid.mat").is_file())
}

/// The 0-indexed official labels the configuration selects, in order.
pub fn select_classes(data: &DataConfig) -> Result<Vec<usize>, DataError> {
    if data.preset == ClassPreset::Notebook {
        return Ok(NOTEBOOK_LABELS.to_vec());
    }
    let mut labels = Vec::new();
    for name in &data.classes {
        let wanted = name.trim().to_lowercase();
        match CLASS_NAMES.iter().position(|c| *c == wanted) {
            Some(i) if labels.contains(&i) => {
                return Err(DataError::invalid(
                    Path::new("data.classes"),
                    format!("{name:?} is listed twice"),
                ));
            }
            Some(i) => labels.push(i),
            None => {
                return Err(DataError::invalid(
                    Path::new("data.classes"),
                    format!(
                        "unknown Flowers102 class {name:?}; closest official names: {}",
                        suggest(&wanted).join(", ")
                    ),
                ));
            }
        }
    }
    Ok(labels)
}

/// The three official names closest to `name`.
pub fn suggest(name: &str) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = CLASS_NAMES
        .iter()
        .map(|c| {
            let edit = strsim::normalized_damerau_levenshtein(name, c);
            // A shared word ("thistle") is a strong hint even when edits are many.
            let word = name.split_whitespace().any(|w| w.len() > 2 && c.contains(w)) as u8 as f64 * 0.3;
            (edit + word, *c)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.iter().take(3).map(|(_, c)| format!("{c:?}")).collect()
}

/// Read the selected classes. Training = train + val splits, test = test split.
pub fn load(root: &Path, labels: &[usize]) -> Result<Dataset, DataError> {
    let dir = locate(root).ok_or_else(|| {
        DataError::invalid(
            root,
            "no imagelabels.mat and setid.mat here or in flowers-102/; run `flowercam fetch`",
        )
    })?;
    let labels_path = dir.join("imagelabels.mat");
    let setid_path = dir.join("setid.mat");
    let image_labels = matv5::read_indices(&labels_path, "labels")?;
    if let Some((i, l)) = image_labels.iter().enumerate().find(|(_, l)| **l > CLASS_NAMES.len()) {
        return Err(DataError::invalid(
            &labels_path,
            format!("`labels`[{i}] is {l}, expected 1..=102"),
        ));
    }
    let split = |name: &str| -> Result<Vec<usize>, DataError> {
        let ids = matv5::read_indices(&setid_path, name)?;
        if let Some(id) = ids.iter().find(|id| **id > image_labels.len()) {
            return Err(DataError::invalid(
                &setid_path,
                format!(
                    "`{name}` names image {id}, but imagelabels.mat labels only {}",
                    image_labels.len()
                ),
            ));
        }
        Ok(ids)
    };
    let (trnid, valid, tstid) = (split("trnid")?, split("valid")?, split("tstid")?);

    let has_masks = dir.join("segmim").is_dir();
    let sample = |id: usize| -> Option<Sample> {
        let official = image_labels[id - 1] - 1;
        let label = labels.iter().position(|l| *l == official)?;
        let mask = dir.join("segmim").join(format!("segmim_{id:05}.jpg"));
        Some(Sample {
            path: dir.join("jpg").join(format!("image_{id:05}.jpg")),
            label,
            mask: (has_masks && mask.is_file()).then_some(mask),
        })
    };
    let train = trnid.iter().chain(&valid).filter_map(|&id| sample(id)).collect();
    let test = tstid.iter().filter_map(|&id| sample(id)).collect();
    Ok(Dataset {
        root: dir,
        format: "flowers102",
        classes: labels
            .iter()
            .map(|&l| ClassInfo {
                name: CLASS_NAMES[l].to_string(),
                source_label: Some(l),
            })
            .collect(),
        train,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn default_classes_are_the_design_labels() {
        let labels = select_classes(&Config::defaults().data).unwrap();
        assert_eq!(labels, vec![0, 9, 16, 27, 51, 62, 7, 81]);
    }

    #[test]
    fn unknown_class_suggests_close_names() {
        let mut data = Config::defaults().data;
        data.classes = vec!["globe thistel".into()];
        let e = select_classes(&data).unwrap_err().to_string();
        assert!(e.contains("globe thistle"), "{e}");
        data.classes = vec!["thistle".into()];
        let e = select_classes(&data).unwrap_err().to_string();
        assert!(e.contains("spear thistle") || e.contains("globe thistle"), "{e}");
    }

    #[test]
    fn notebook_preset_uses_literal_labels() {
        let mut data = Config::defaults().data;
        data.preset = ClassPreset::Notebook;
        assert_eq!(select_classes(&data).unwrap(), vec![1, 10, 17, 28, 51, 63, 70, 82]);
    }
}
