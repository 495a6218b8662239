//! The options `c3` and `c3-tui` share: where the model and the store are,
//! and how the model is loaded.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// C3 checkpoint directory (config.json, model.safetensors, llm1/, qwen.tiktoken).
    #[arg(long, global = true, env = "C3_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Compute dtype for the model weights.
    #[arg(long, global = true, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Memory store directory [default: the platform data dir, e.g. ~/.local/share/c3/store].
    #[arg(long, global = true, env = "C3_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Quantize the decoder's matrices when loading it (smaller and faster
    /// decoding on CPU; see README, Performance). Default: dense, in --dtype.
    #[arg(long, global = true, value_name = "q8_0|q4k")]
    pub decoder_quant: Option<crate::model::Quant>,
    /// Where the model runs: `auto` takes GPU 0 when c3 was built with the
    /// `cuda` feature and one is present, else the CPU.
    #[arg(long, global = true, env = "C3_DEVICE", value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

impl GlobalOptions {
    /// `--store`, or the default store.
    pub fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(default_store_dir)
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl DTypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DTypeArg::F32 => candle_core::DType::F32,
            DTypeArg::F16 => candle_core::DType::F16,
            DTypeArg::Bf16 => candle_core::DType::BF16,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceArg {
    /// The device to load models on. `cuda` is an error (not a silent CPU
    /// run) when this build has no CUDA support or no GPU answers.
    pub fn device(self) -> crate::Result<candle_core::Device> {
        use candle_core::Device;
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            // A CUDA build on a machine without a GPU still runs, on the CPU.
            DeviceArg::Auto if candle_core::utils::cuda_is_available() => {
                Ok(Device::new_cuda(0).unwrap_or(Device::Cpu))
            }
            DeviceArg::Auto => Ok(Device::Cpu),
            DeviceArg::Cuda if !candle_core::utils::cuda_is_available() => {
                Err(crate::Error::Input(
                    "--device cuda: this c3 was built without the `cuda` feature \
                     (cargo build --release --features cuda)"
                        .into(),
                ))
            }
            DeviceArg::Cuda => Device::new_cuda(0)
                .map_err(|e| crate::Error::Input(format!("--device cuda: no usable GPU 0 ({e})"))),
        }
    }

    /// The device `C3_DEVICE` names, for programs without a command line of
    /// their own (tests, benchmarks).
    pub fn env_device() -> crate::Result<candle_core::Device> {
        Self::from_env()?.device()
    }

    /// `C3_DEVICE` (auto, cpu or cuda; default auto).
    pub fn from_env() -> crate::Result<Self> {
        match std::env::var("C3_DEVICE") {
            Err(_) => Ok(DeviceArg::Auto),
            Ok(v) => <Self as ValueEnum>::from_str(&v, true).map_err(|_| {
                crate::Error::Input(format!("C3_DEVICE=`{v}`: expected auto, cpu or cuda"))
            }),
        }
    }
}

/// Default store: the platform data dir, e.g. `~/.local/share/c3/store`.
pub fn default_store_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("c3")
        .join("store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices() {
        assert!(DeviceArg::Cpu.device().unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() {
            // Without the feature, auto is the CPU and cuda is an error.
            assert!(DeviceArg::Auto.device().unwrap().is_cpu());
            let e = DeviceArg::Cuda.device().unwrap_err().to_string();
            assert!(e.contains("without the `cuda` feature"), "{e}");
        }
    }
}
