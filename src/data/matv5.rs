//! MATLAB v5 `.mat` files: the official Flowers102 labels and splits are
//! stored this way. Reading goes through the `matfile` crate (it handles the
//! zlib-compressed elements and MATLAB's habit of storing integer-valued
//! doubles as `uint8`); writing is ours, because synthetic datasets and tests
//! need real `.mat` files and no maintained crate writes them.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::ZlibEncoder};

use super::DataError;

/// Read the numeric array `name` from a `.mat` file, flattened to f64s.
pub fn read_vector(path: &Path, name: &str) -> Result<Vec<f64>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    // matfile parses with nom and should return errors, but a library panic on
    // a hostile file must still become a message that names the file.
    let parsed = std::panic::catch_unwind(|| matfile::MatFile::parse(bytes.as_slice()));
    let mat = match parsed {
        Ok(Ok(mat)) => mat,
        Ok(Err(e)) => {
            return Err(DataError::invalid(path, format!("not a readable MATLAB v5 file ({e})")));
        }
        Err(_) => {
            return Err(DataError::invalid(
                path,
                "not a readable MATLAB v5 file (parser failed)",
            ));
        }
    };
    let array = mat.find_by_name(name).ok_or_else(|| {
        let found: Vec<&str> = mat.arrays().iter().map(|a| a.name()).collect();
        DataError::invalid(path, format!("has no variable `{name}` (found: {})", found.join(", ")))
    })?;
    use matfile::NumericData as N;
    let values: Vec<f64> = match array.data() {
        N::Double { real, .. } => real.clone(),
        N::Single { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::UInt8 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::Int8 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::UInt16 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::Int16 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::UInt32 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::Int32 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::UInt64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
        N::Int64 { real, .. } => real.iter().map(|&v| v as f64).collect(),
    };
    Ok(values)
}

/// Read `name` as 1-based positive integers (labels, image ids).
pub fn read_indices(path: &Path, name: &str) -> Result<Vec<usize>, DataError> {
    read_vector(path, name)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if v.fract() == 0.0 && (1.0..1e9).contains(&v) {
                Ok(v as usize)
            } else {
                Err(DataError::invalid(
                    path,
                    format!("`{name}`[{i}] is {v}, expected a positive integer"),
                ))
            }
        })
        .collect()
}

/// Write row vectors of doubles as a MATLAB v5 file with compressed elements,
/// the same shape as the official files (`1×N double`).
pub fn write_vectors(path: &Path, arrays: &[(&str, &[f64])]) -> std::io::Result<()> {
    let mut out = Vec::new();
    let mut header = format!(
        "MATLAB 5.0 MAT-file, Platform: flowercam, Created by: flowercam {}",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    header.resize(116, b' ');
    out.extend_from_slice(&header);
    out.extend_from_slice(&[0u8; 8]); // no subsystem data
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for (name, values) in arrays {
        let matrix = matrix_element(name, values);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&matrix)?;
        let compressed = z.finish()?;
        out.extend_from_slice(&15u32.to_le_bytes()); // miCOMPRESSED
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
    }
    crate::fsutil::write_atomic(path, &out)
}

fn matrix_element(name: &str, values: &[f64]) -> Vec<u8> {
    let mut body = Vec::new();
    push_element(&mut body, 6, &{
        // miUINT32 array flags: class mxDOUBLE_CLASS (6), no flags.
        let mut f = 6u32.to_le_bytes().to_vec();
        f.extend_from_slice(&0u32.to_le_bytes());
        f
    });
    let mut dims = 1i32.to_le_bytes().to_vec();
    dims.extend_from_slice(&(values.len() as i32).to_le_bytes());
    push_element(&mut body, 5, &dims); // miINT32
    push_element(&mut body, 1, name.as_bytes()); // miINT8
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    push_element(&mut body, 9, &data); // miDOUBLE
    let mut matrix = 14u32.to_le_bytes().to_vec(); // miMATRIX
    matrix.extend_from_slice(&(body.len() as u32).to_le_bytes());
    matrix.extend_from_slice(&body);
    matrix
}

fn push_element(out: &mut Vec<u8>, ty: u32, data: &[u8]) {
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let pad = (8 - data.len() % 8) % 8;
    out.extend(std::iter::repeat_n(0u8, pad));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("setid.mat");
        let a = [3.0, 1.0, 2.0];
        let b: Vec<f64> = (1..=300).map(|v| v as f64).collect();
        write_vectors(&p, &[("trnid", &a), ("tstid", &b)]).unwrap();
        assert_eq!(read_indices(&p, "trnid").unwrap(), vec![3, 1, 2]);
        assert_eq!(read_indices(&p, "tstid").unwrap().len(), 300);
        let e = read_indices(&p, "valid").unwrap_err().to_string();
        assert!(
            e.contains("setid.mat") && e.contains("valid") && e.contains("trnid"),
            "{e}"
        );
    }

    #[test]
    fn truncated_and_garbage_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("imagelabels.mat");
        let labels: Vec<f64> = (0..500).map(|v| (v % 7 + 1) as f64).collect();
        write_vectors(&p, &[("labels", &labels)]).unwrap();
        let whole = std::fs::read(&p).unwrap();
        for cut in [0, 10, 127, 128, 140, whole.len() / 2, whole.len() - 1] {
            std::fs::write(&p, &whole[..cut]).unwrap();
            let e = read_vector(&p, "labels").unwrap_err().to_string();
            assert!(e.contains("imagelabels.mat"), "cut {cut}: {e}");
        }
        std::fs::write(&p, b"this is not a mat file at all, just text that goes on").unwrap();
        assert!(read_vector(&p, "labels").is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mat");
        write_vectors(&p, &[("labels", &[1.0, 2.5])]).unwrap();
        let e = read_indices(&p, "labels").unwrap_err().to_string();
        assert!(e.contains("`labels`[1] is 2.5"), "{e}");
    }
}
