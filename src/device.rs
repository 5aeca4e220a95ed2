//! Choosing where tensors live. Asking for CUDA in a build without the `cuda`
//! feature, or on a machine without a GPU, is a clear error, never a panic.

use candle_core::Device;

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<DeviceSpec, String> {
    match text {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(DeviceSpec::Cuda(n)),
            _ => Err(format!("unknown device {other:?}, expected cpu, cuda or cuda:N")),
        },
    }
}

/// Open the device, explaining what to do when CUDA is unavailable.
pub fn open(spec: DeviceSpec) -> Result<Device, String> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => {
            if !cfg!(feature = "cuda") {
                return Err(format!(
                    "--device cuda:{n}: this flowercam was built without CUDA support; \
                     rebuild with `cargo build --release --features cuda` (needs nvcc), or use --device cpu"
                ));
            }
            Device::new_cuda(n).map_err(|e| format!("--device cuda:{n}: no usable GPU ({e}); use --device cpu"))
        }
    }
}

/// A short human description for headers and the TUI.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => match rayon::current_num_threads() {
            1 => "cpu (1 thread)".to_string(),
            n => format!("cpu ({n} threads)"),
        },
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(parse_device("cpu"), Ok(DeviceSpec::Cpu));
        assert_eq!(parse_device("cuda"), Ok(DeviceSpec::Cuda(0)));
        assert_eq!(parse_device("cuda:2"), Ok(DeviceSpec::Cuda(2)));
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("gpu").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_clear_error() {
        let e = open(DeviceSpec::Cuda(0)).unwrap_err();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
