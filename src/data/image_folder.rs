//! People's own data: `root/<class>/*.{jpg,jpeg,png}`, with `train/` and
//! `test/` subfolders when present, otherwise a seeded stratified split.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{ClassInfo, DataError, Dataset, Sample};

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort();
    Ok(entries)
}

/// Class folders (sorted, as torchvision's ImageFolder) and their images.
fn scan(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let mut classes = Vec::new();
    for entry in sorted_entries(dir)? {
        if !entry.is_dir() {
            continue;
        }
        let name = entry.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let images: Vec<PathBuf> = sorted_entries(&entry)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        classes.push((name, images));
    }
    Ok(classes)
}

/// Read an ImageFolder dataset.
pub fn load(root: &Path, test_fraction: f64, seed: u64) -> Result<Dataset, DataError> {
    let (train_dir, test_dir) = (root.join("train"), root.join("test"));
    let (names, train, test) = if train_dir.is_dir() && test_dir.is_dir() {
        let train_classes = scan(&train_dir)?;
        let test_classes = scan(&test_dir)?;
        let names: Vec<String> = train_classes.iter().map(|(n, _)| n.clone()).collect();
        let test_names: Vec<String> = test_classes.iter().map(|(n, _)| n.clone()).collect();
        if names != test_names {
            return Err(DataError::invalid(
                root,
                format!("train/ has classes {names:?} but test/ has {test_names:?}; they must match"),
            ));
        }
        let flatten = |classes: Vec<(String, Vec<PathBuf>)>| -> Vec<Sample> {
            classes
                .into_iter()
                .enumerate()
                .flat_map(|(label, (_, paths))| {
                    paths.into_iter().map(move |path| Sample {
                        path,
                        label,
                        mask: None,
                    })
                })
                .collect()
        };
        (names, flatten(train_classes), flatten(test_classes))
    } else {
        let classes = scan(root)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (label, (_, mut paths)) in classes.iter().cloned().enumerate() {
            paths.shuffle(&mut rng);
            // Stratified: every class with two or more images lands in both splits.
            let n = paths.len();
            let n_test = if n < 2 {
                0
            } else {
                ((n as f64 * test_fraction).round() as usize).clamp(1, n - 1)
            };
            for (i, path) in paths.into_iter().enumerate() {
                let s = Sample {
                    path,
                    label,
                    mask: None,
                };
                if i < n_test { test.push(s) } else { train.push(s) }
            }
        }
        (classes.into_iter().map(|(n, _)| n).collect(), train, test)
    };
    if names.is_empty() {
        return Err(DataError::invalid(
            root,
            "no class folders with images (expected DIR/<class>/*.jpg, or Flowers102 files)",
        ));
    }
    Ok(Dataset {
        root: root.to_owned(),
        format: "image_folder",
        classes: names
            .into_iter()
            .map(|name| ClassInfo {
                name,
                source_label: None,
            })
            .collect(),
        train,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let dir = tempfile::tempdir().unwrap();
        for c in ["b_rose", "a_tulip"] {
            for i in 0..10 {
                touch(&dir.path().join(c).join(format!("{i}.JPG")));
            }
        }
        touch(&dir.path().join("a_tulip/notes.txt"));
        let ds = load(dir.path(), 0.3, 1).unwrap();
        assert_eq!(ds.classes[0].name, "a_tulip");
        let t = ds.class_table();
        assert_eq!((t[0].train, t[0].test, t[1].train, t[1].test), (7, 3, 7, 3));
        let again = load(dir.path(), 0.3, 1).unwrap();
        assert_eq!(ds.test, again.test);
        let other = load(dir.path(), 0.3, 2).unwrap();
        assert_ne!(ds.test, other.test);
    }

    #[test]
    fn train_and_test_folders_are_used_as_given() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("train/rose/1.png"));
        touch(&dir.path().join("train/rose/2.jpeg"));
        touch(&dir.path().join("test/rose/3.jpg"));
        let ds = load(dir.path(), 0.5, 0).unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (2, 1));
        touch(&dir.path().join("test/tulip/4.jpg"));
        let e = load(dir.path(), 0.5, 0).unwrap_err().to_string();
        assert!(e.contains("tulip"), "{e}");
    }
}
