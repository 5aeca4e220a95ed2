//! Getting weights into a [`ResNet`]: torchvision `.pth` state dicts,
//! safetensors with torchvision/timm keys, flowercam checkpoints (which carry
//! their class names), or torchvision's random initialisation. Every missing
//! key or wrong shape is an error naming the key and both shapes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};

use super::resnet::{Arch, BasicBlock, BatchNorm, Conv, Linear, ResNet, WIDTHS, to_f32};

/// A weights problem, naming the file and key.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: missing key `{key}` (expected shape {expected:?})")]
    Missing {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
    },
    #[error("{path}: key `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: unexpected keys {keys:?} (is this a ResNet-18/34 state dict?)")]
    Unexpected { path: PathBuf, keys: Vec<String> },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Where ResNet tensors come from while the network is assembled: asked
/// for each torchvision key with its expected shape (`None` = any size).
trait Source {
    fn take(&mut self, key: &str, shape: &[Option<usize>]) -> Result<Tensor, WeightsError>;
}

/// Assemble a network, asking `src` for every tensor in torchvision order.
fn assemble(arch: Arch, src: &mut dyn Source) -> Result<ResNet, WeightsError> {
    let conv = |src: &mut dyn Source,
                key: &str,
                o: usize,
                i: usize,
                k: usize,
                stride,
                padding|
     -> Result<Conv, WeightsError> {
        Ok(Conv {
            weight: src.take(&format!("{key}.weight"), &[Some(o), Some(i), Some(k), Some(k)])?,
            stride,
            padding,
        })
    };
    let bn = |src: &mut dyn Source, key: &str, c: usize| -> Result<BatchNorm, WeightsError> {
        let s = [Some(c)];
        Ok(BatchNorm {
            weight: src.take(&format!("{key}.weight"), &s)?,
            bias: src.take(&format!("{key}.bias"), &s)?,
            running_mean: Var::from_tensor(&src.take(&format!("{key}.running_mean"), &s)?)?,
            running_var: Var::from_tensor(&src.take(&format!("{key}.running_var"), &s)?)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    };
    let conv1 = conv(src, "conv1", 64, 3, 7, 2, 3)?;
    let bn1 = bn(src, "bn1", 64)?;
    let mut layers: [Vec<BasicBlock>; 4] = Default::default();
    let mut in_ch = 64;
    for (li, &n) in arch.blocks().iter().enumerate() {
        let out_ch = WIDTHS[li];
        for bi in 0..n {
            let p = format!("layer{}.{bi}", li + 1);
            let stride = if bi == 0 && li > 0 { 2 } else { 1 };
            let c_in = if bi == 0 { in_ch } else { out_ch };
            let downsample = if bi == 0 && (stride != 1 || c_in != out_ch) {
                Some((
                    conv(src, &format!("{p}.downsample.0"), out_ch, c_in, 1, stride, 0)?,
                    bn(src, &format!("{p}.downsample.1"), out_ch)?,
                ))
            } else {
                None
            };
            layers[li].push(BasicBlock {
                conv1: conv(src, &format!("{p}.conv1"), out_ch, c_in, 3, stride, 1)?,
                bn1: bn(src, &format!("{p}.bn1"), out_ch)?,
                conv2: conv(src, &format!("{p}.conv2"), out_ch, out_ch, 3, 1, 1)?,
                bn2: bn(src, &format!("{p}.bn2"), out_ch)?,
                downsample,
            });
        }
        in_ch = out_ch;
    }
    let fc_w = src.take("fc.weight", &[None, Some(512)])?;
    let n = fc_w.dims()[0];
    let fc = Linear {
        weight: fc_w,
        bias: src.take("fc.bias", &[Some(n)])?,
    };
    Ok(ResNet {
        arch,
        conv1,
        bn1,
        layers,
        fc,
        conv_path: super::resnet::ConvPath::default(),
    })
}

/// Tensors read from a file, consumed key by key.
struct MapSource {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    device: Device,
}

impl Source for MapSource {
    fn take(&mut self, key: &str, shape: &[Option<usize>]) -> Result<Tensor, WeightsError> {
        let expected: Vec<usize> = shape.iter().map(|d| d.unwrap_or(0)).collect();
        let t = self.tensors.remove(key).ok_or_else(|| WeightsError::Missing {
            path: self.path.clone(),
            key: key.into(),
            expected: expected.clone(),
        })?;
        let found = t.dims().to_vec();
        let fits = found.len() == shape.len() && found.iter().zip(shape).all(|(f, s)| s.is_none_or(|s| s == *f));
        if !fits {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                key: key.into(),
                expected,
                found,
            });
        }
        Ok(to_f32(t)?.to_device(&self.device)?)
    }
}

/// torchvision's initialisation, deterministic per seed and key.
struct InitSource {
    seed: u64,
    device: Device,
    num_classes: usize,
}

impl Source for InitSource {
    fn take(&mut self, key: &str, shape: &[Option<usize>]) -> Result<Tensor, WeightsError> {
        let dims: Vec<usize> = shape.iter().map(|d| d.unwrap_or(self.num_classes)).collect();
        let n: usize = dims.iter().product();
        let mut rng = rng_for(self.seed, key);
        let data: Vec<f32> = if key.ends_with("running_var")
            || (key.contains("bn") || key.contains("downsample.1")) && key.ends_with("weight")
        {
            vec![1.0; n]
        } else if key.ends_with("running_mean") || key.ends_with("bias") && !key.starts_with("fc") {
            vec![0.0; n]
        } else if key.starts_with("fc") {
            let bound = 1.0 / (512f32).sqrt();
            let u = Uniform::new(-bound, bound).expect("valid bounds");
            (0..n).map(|_| u.sample(&mut rng)).collect()
        } else {
            // kaiming_normal_(mode="fan_out", nonlinearity="relu")
            let fan_out = dims[0] * dims[2] * dims[3];
            let normal = Normal::new(0.0, (2.0 / fan_out as f32).sqrt()).expect("valid std");
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        Ok(Tensor::from_vec(data, dims, &self.device)?)
    }
}

fn rng_for(seed: u64, key: &str) -> rand_chacha::ChaCha8Rng {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ h)
}

/// A randomly initialised network (torchvision's scheme) with `num_classes` outputs.
pub fn random(arch: Arch, num_classes: usize, seed: u64, device: &Device) -> Result<ResNet, WeightsError> {
    assemble(
        arch,
        &mut InitSource {
            seed,
            device: device.clone(),
            num_classes,
        },
    )
}

/// A fresh `Linear(in, n)` head, as `nn.Linear`'s default initialisation.
pub fn init_linear(in_features: usize, n: usize, seed: u64, device: &Device) -> candle_core::Result<Linear> {
    let bound = 1.0 / (in_features as f32).sqrt();
    let u = Uniform::new(-bound, bound).expect("valid bounds");
    let mut rng = rng_for(seed, "fc.head");
    let w: Vec<f32> = (0..n * in_features).map(|_| u.sample(&mut rng)).collect();
    let b: Vec<f32> = (0..n).map(|_| u.sample(&mut rng)).collect();
    Ok(Linear {
        weight: Tensor::from_vec(w, (n, in_features), device)?,
        bias: Tensor::from_vec(b, n, device)?,
    })
}

/// The class names a flowercam checkpoint carries, if any.
pub type ClassNames = Option<Vec<String>>;

/// Read every tensor of a `.pth` or `.safetensors` file, and the class names
/// stored in flowercam checkpoints.
pub fn read_tensors(path: &Path) -> Result<(HashMap<String, Tensor>, ClassNames), WeightsError> {
    let file_err = |message: String| WeightsError::File {
        path: path.to_owned(),
        message,
    };
    if !path.is_file() {
        return Err(file_err("no such file".into()));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (mut tensors, classes) = if ext == "safetensors" {
        let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| file_err(format!("not a safetensors file ({e})")))?;
        let classes = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("classes"))
            .and_then(|c| serde_json::from_str::<Vec<String>>(c).ok());
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| file_err(format!("not a safetensors file ({e})")))?;
        (tensors, classes)
    } else {
        // torchvision's files are plain state dicts; training scripts often nest one.
        let mut found = Vec::new();
        for key in [None, Some("state_dict"), Some("model")] {
            match candle_core::pickle::read_all_with_key(path, key) {
                Ok(v) if !v.is_empty() => {
                    found = v;
                    break;
                }
                Ok(_) => {}
                Err(e) if key.is_none() => {
                    return Err(file_err(format!(
                        "not a PyTorch checkpoint candle can read ({e}); re-save it with torch.save(model.state_dict(), path) or convert to .safetensors"
                    )));
                }
                Err(_) => {}
            }
        }
        if found.is_empty() {
            return Err(file_err("holds no tensors".into()));
        }
        (found.into_iter().collect(), None)
    };
    tensors.retain(|k, _| !k.ends_with("num_batches_tracked"));
    Ok((tensors, classes))
}

/// Load a network from a weights file. Returns the class names of flowercam checkpoints.
pub fn load(path: &Path, arch: Arch, device: &Device) -> Result<(ResNet, ClassNames), WeightsError> {
    let (tensors, classes) = read_tensors(path)?;
    let mut src = MapSource {
        path: path.to_owned(),
        tensors,
        device: device.clone(),
    };
    let model = assemble(arch, &mut src)?;
    if !src.tensors.is_empty() {
        let mut keys: Vec<String> = src.tensors.into_keys().collect();
        keys.sort();
        keys.truncate(5);
        return Err(WeightsError::Unexpected {
            path: path.to_owned(),
            keys,
        });
    }
    if let Some(c) = &classes
        && c.len() != model.num_classes()
    {
        return Err(WeightsError::File {
            path: path.to_owned(),
            message: format!(
                "names {} classes but the head has {} outputs",
                c.len(),
                model.num_classes()
            ),
        });
    }
    Ok((model, classes))
}

/// Write a checkpoint (safetensors, torchvision keys) with its class names,
/// atomically. `predict` and `view` load it back.
pub fn save_checkpoint(model: &mut ResNet, classes: &[String], path: &Path) -> Result<(), WeightsError> {
    let file_err = |message: String| WeightsError::File {
        path: path.to_owned(),
        message,
    };
    let tensors = model.state_dict();
    let mut views = Vec::new();
    for (k, t) in &tensors {
        let data: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        views.push((k.clone(), t.dims().to_vec(), bytes));
    }
    let owned: Vec<(String, safetensors::tensor::TensorView)> = views
        .iter()
        .map(|(k, shape, bytes)| {
            Ok((
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()
        .map_err(|e| file_err(e.to_string()))?;
    let meta = HashMap::from([
        ("format".to_string(), "flowercam".to_string()),
        ("arch".to_string(), model.arch.name().to_string()),
        (
            "classes".to_string(),
            serde_json::to_string(classes).expect("strings serialise"),
        ),
    ]);
    let bytes = safetensors::tensor::serialize(owned, Some(meta)).map_err(|e| file_err(e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes).map_err(|e| file_err(e.to_string()))
}
