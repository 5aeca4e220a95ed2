//! The data pipeline end to end: synthetic datasets in the official layout,
//! the Flowers102 reader (on the real `.mat` files when ../shared exists),
//! the decode cache and downloads against a local server.

mod common;

use std::path::{Path, PathBuf};

use flowercam::config::Config;
use flowercam::data::{self, synth::SynthSpec};

fn small_synth(dir: &Path, per_class: usize) -> data::synth::SynthSummary {
    let spec = SynthSpec {
        labels: vec![0, 9, 16],
        images_per_class: Some(per_class),
        size: 48,
        shortcut: Some(2),
        seed: 1,
        same_species: false,
    };
    data::synth::write(dir, &spec, &|_, _| {}).unwrap()
}

fn config_for(root: &Path, classes: &[&str]) -> Config {
    let mut c = Config::defaults();
    c.data.root = root.to_owned();
    c.data.classes = classes.iter().map(|s| s.to_string()).collect();
    c
}

#[test]
fn synthetic_dataset_reads_back_through_the_official_reader() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_synth(dir.path(), 8);
    assert_eq!((s.images, s.train, s.val, s.test), (24, 6, 6, 12));
    let ds = data::load(&config_for(
        dir.path(),
        &["pink primrose", "globe thistle", "purple coneflower"],
    ))
    .unwrap();
    assert_eq!(ds.format, "flowers102");
    let table = ds.class_table();
    assert_eq!(
        table.iter().map(|r| (r.train, r.test, r.masks)).collect::<Vec<_>>(),
        vec![(4, 4, 8); 3]
    );
    assert_eq!(table[1].label, Some(9));
    // Selecting a subset, in another order, relabels by position.
    let ds2 = data::load(&config_for(dir.path(), &["purple coneflower", "pink primrose"])).unwrap();
    assert_eq!(ds2.classes[0].name, "purple coneflower");
    assert_eq!(ds2.train.len(), 8);
    let text = ds.class_table_text();
    assert!(text.contains("globe thistle") && text.contains("total"), "{text}");

    // Decoding keeps every image and its mask, resized to the short side.
    let set = data::cache::decode_dataset(&ds, 40, &|_, _| {}).unwrap();
    assert_eq!((set.train.len(), set.test.len(), set.skipped.len()), (12, 12, 0));
    for img in set.train.iter().chain(&set.test) {
        assert_eq!(img.rgb.width().min(img.rgb.height()), 40);
        let mask = img.mask.as_ref().expect("synthetic images have masks");
        let flower = mask.pixels().filter(|p| p.0[0] == 255).count() as f64 / mask.len() as f64;
        assert!(flower > 0.02 && flower < 0.7, "flower share {flower}");
    }
}

#[test]
fn torchvision_layout_is_found_and_a_missing_class_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(&dir.path().join("flowers-102"), 4);
    let ds = data::load(&config_for(dir.path(), &["globe thistle"])).unwrap();
    assert!(ds.root.ends_with("flowers-102"));
    let e = data::load(&config_for(dir.path(), &["globe thistle", "sunflower"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("class \"sunflower\" has 0 training"), "{e}");
}

#[test]
fn truncated_mat_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    small_synth(dir.path(), 4);
    let p = dir.path().join("setid.mat");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 20]).unwrap();
    let e = data::load(&config_for(dir.path(), &["globe thistle"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("setid.mat"), "{e}");
}

#[test]
fn default_synth_mirrors_the_real_split_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec {
        labels: data::flowers102::select_classes(&Config::defaults().data).unwrap(),
        images_per_class: None,
        size: 24,
        shortcut: None,
        seed: 0,
        same_species: false,
    };
    let s = data::synth::write(dir.path(), &spec, &|_, _| {}).unwrap();
    assert_eq!((s.train + s.val, s.test), (160, 412));
    let mut c = Config::defaults();
    c.data.root = dir.path().to_owned();
    let ds = data::load(&c).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (160, 412));
}

fn shared_flowers() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/flowers102");
    p.join("imagelabels.mat").is_file().then_some(p)
}

#[test]
fn real_official_mat_files_give_the_design_counts() {
    let Some(shared) = shared_flowers() else {
        eprintln!("../shared/data/flowers102 not present; skipping the real-file check");
        return;
    };
    // Read them where they are: the reader needs no images to count.
    let labels = data::flowers102::select_classes(&Config::defaults().data).unwrap();
    let ds = data::flowers102::load(&shared, &labels).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (160, 412));
    let tests: Vec<usize> = ds.class_table().iter().map(|r| r.test).collect();
    assert_eq!(tests, vec![20, 25, 65, 46, 65, 34, 65, 92]);
    assert!(ds.class_table().iter().all(|r| r.train == 20));
    // The .mat files stay byte-identical to what was published.
    assert_eq!(
        data::fetch::md5_file(&shared.join("imagelabels.mat")).unwrap(),
        "e0620be6f572b9609742df49c70aed4d"
    );
    assert_eq!(
        data::fetch::md5_file(&shared.join("setid.mat")).unwrap(),
        "a5357ecc9cb78c4bef273ce3793fc85c"
    );
}

#[test]
fn download_resumes_after_a_broken_connection() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let md5 = common::md5_hex(&body);
    let server = common::TestServer::start(vec![("big.bin", body.clone())], Some(50_000));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.bin");
    let url = format!("{}/big.bin", server.url);
    let e = data::fetch::download(&url, &dest, Some(&md5), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("resume"), "{e}");
    assert!(!dest.exists(), "nothing at the destination until verified");
    let mut last = (0, None);
    data::fetch::download(&url, &dest, Some(&md5), &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(last, (200_000, Some(200_000)));
    let log = server.requests.lock().unwrap().clone();
    assert_eq!(
        log,
        vec!["/big.bin None".to_string(), "/big.bin Some(50000)".to_string()]
    );
}

#[test]
fn bad_checksum_deletes_the_file_and_says_so() {
    let server = common::TestServer::start(vec![("x.mat", b"not what you wanted".to_vec())], None);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.mat");
    let e = data::fetch::download(
        &format!("{}/x.mat", server.url),
        &dest,
        Some("00000000000000000000000000000000"),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("checksum mismatch") && e.contains("deleted"), "{e}");
    assert!(!dest.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the .part file is gone too"
    );
    let e = data::fetch::download(&format!("{}/nope", server.url), &dest, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
}

#[test]
fn fetch_places_a_whole_dataset_and_skips_verified_files() {
    // A tiny "102flowers.tgz" holding jpg/, served with the .mat files.
    let src = tempfile::tempdir().unwrap();
    small_synth(src.path(), 4);
    let mut tgz = Vec::new();
    {
        let enc = flate2::write::GzEncoder::new(&mut tgz, flate2::Compression::fast());
        let mut tar = tar::Builder::new(enc);
        tar.append_dir_all("jpg", src.path().join("jpg")).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let labels = std::fs::read(src.path().join("imagelabels.mat")).unwrap();
    let setid = std::fs::read(src.path().join("setid.mat")).unwrap();
    let files = [
        data::fetch::RemoteFile {
            name: "imagelabels.mat",
            md5: Some(Box::leak(common::md5_hex(&labels).into_boxed_str())),
        },
        data::fetch::RemoteFile {
            name: "setid.mat",
            md5: Some(Box::leak(common::md5_hex(&setid).into_boxed_str())),
        },
        data::fetch::RemoteFile {
            name: "102flowers.tgz",
            md5: Some(Box::leak(common::md5_hex(&tgz).into_boxed_str())),
        },
    ];
    let server = common::TestServer::start(
        vec![
            ("imagelabels.mat", labels),
            ("setid.mat", setid),
            ("102flowers.tgz", tgz),
        ],
        None,
    );
    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("flowers-102");
    let out = data::fetch::fetch_flowers(&server.url, &dir, &files, &mut |_, _, _| {}).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(std::fs::read_dir(dir.join("jpg")).unwrap().count(), 12);
    assert!(!dir.join("102flowers.tgz").exists());
    let ds = data::load(&config_for(dest.path(), &["globe thistle"])).unwrap();
    assert_eq!(ds.train.len() + ds.test.len(), 4);
    let again = data::fetch::fetch_flowers(&server.url, &dir, &files, &mut |_, _, _| {}).unwrap();
    assert!(
        again
            .iter()
            .all(|o| matches!(o, data::fetch::FetchOutcome::AlreadyThere(_))),
        "{again:?}"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 3, "nothing downloaded twice");
}
