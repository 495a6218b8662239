//! The options `c3` and `c3-tui` share: where the model and the store are,
//! and how the model is loaded.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// Checkpoint directory (C3 or LCLM), or a Hugging Face hub repo id
    /// `org/name[@revision]` found in the local hub cache (`c3 pull` fills it).
    #[arg(long, global = true, env = "C3_MODEL", value_name = "DIR|ORG/NAME")]
    pub model: Option<PathBuf>,
    /// With a hub repo id for --model / --answer-model that the cache lacks:
    /// download it first (as `c3 pull` does). Never with HF_HUB_OFFLINE=1.
    #[arg(long, global = true)]
    pub download: bool,
    /// Compute dtype for the model weights.
    #[arg(long, global = true, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Memory store directory [default: the platform data dir, e.g. ~/.local/share/c3/store].
    #[arg(long, global = true, env = "C3_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Quantize the decoder's matrices when loading it (smaller and faster
    /// decoding on CPU; see docs/performance.md). Default: dense, in --dtype.
    #[arg(long, global = true, value_name = "q8_0|q4k", value_parser = parse_decoder_quant)]
    pub decoder_quant: Option<crate::model::Quant>,
    /// How the encoder multiplies its matrices: `i16` = 14-bit integer
    /// products on a CPU with AVX2 (faster; latents within a bf16 rounding
    /// of f32's, docs/performance.md), `dense` = in --dtype, `auto` = i16
    /// where it runs (CPU with AVX2, --dtype f32), else dense. The i16
    /// kernel is the fastest the CPU has (AVX-512 VNNI, else AVX2);
    /// `i16-avx2` / `i16-avx512vnni` insist on one.
    #[arg(long, global = true, env = "C3_ENCODER_PRECISION", value_enum,
          default_value_t = EncoderPrecision::Auto)]
    pub encoder_precision: EncoderPrecision,
    /// Where the model runs: `auto` takes GPU 0 when c3 was built with the
    /// `cuda` feature and one is present, else the CPU.
    #[arg(long, global = true, env = "C3_DEVICE", value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Directory of the prefix cache: the decoder's keys and values over
    /// stored latents, so a second question over the same chunks prefills
    /// only the question (docs/cache.md) [default: STORE/kv-cache].
    #[arg(long, global = true, env = "C3_KV_CACHE", value_name = "DIR")]
    pub kv_cache: Option<PathBuf>,
    /// Most bytes the prefix cache keeps on disk, least recently used out
    /// first; K/M/G/T suffixes (powers of 1024); 0 turns the cache off.
    #[arg(long, global = true, env = "C3_KV_CACHE_SIZE", value_name = "SIZE",
          default_value = "4G", value_parser = parse_size)]
    pub kv_cache_size: u64,
    /// The dtype cached keys and values are stored in: `compute` (the
    /// decoder's own: answers equal those without the cache) or `f16`
    /// (half the bytes of f32).
    #[arg(long, global = true, env = "C3_KV_CACHE_DTYPE", value_enum,
          default_value_t = KvDtypeArg::Compute)]
    pub kv_cache_dtype: KvDtypeArg,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum KvDtypeArg {
    Compute,
    F16,
}

impl KvDtypeArg {
    pub fn kv_dtype(self) -> crate::kvcache::KvDtype {
        match self {
            KvDtypeArg::Compute => crate::kvcache::KvDtype::Compute,
            KvDtypeArg::F16 => crate::kvcache::KvDtype::F16,
        }
    }
}

/// A byte size: a number with an optional K, M, G or T suffix (powers of
/// 1024; `KiB`, `MB`, … read the same), e.g. `4G`, `512M`, `0`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("`{t}`: expected a size such as 4G, 512M or 0")),
    };
    let value: f64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{t}`: expected a size such as 4G, 512M or 0"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{t}`: a size is a number of bytes, 0 or more"));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

impl GlobalOptions {
    /// `--store`, or the default store.
    pub fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(default_store_dir)
    }
}

/// `--decoder-quant`: the GGML block formats (i16 is the encoder's).
fn parse_decoder_quant(s: &str) -> Result<crate::model::Quant, String> {
    match s.parse()? {
        crate::model::Quant::I16 => Err(
            "i16 is the encoder's format (--encoder-precision); the decoder takes q8_0 or q4k"
                .into(),
        ),
        q => Ok(q),
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EncoderPrecision {
    Auto,
    Dense,
    I16,
    /// i16 with the AVX2 kernel even where a faster one runs.
    #[value(name = "i16-avx2")]
    I16Avx2,
    /// i16 with the AVX-512 VNNI kernel (an error without it).
    #[value(name = "i16-avx512vnni")]
    I16Avx512vnni,
    /// Weights packed to bf16 at load, products by AVX-512 BF16's
    /// `vdpbf16ps` (an error without it; less accurate than i16).
    #[value(name = "bf16-avx512")]
    Bf16Avx512,
}

impl EncoderPrecision {
    /// The matrix format the encoder loads with on `device` for `dtype`;
    /// an explicit `i16` that cannot run is an error, not a silent f32 run.
    pub fn quant(
        self,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> crate::Result<Option<crate::model::Quant>> {
        use crate::model::quant::i16_supported;
        use crate::model::Quant;
        match self {
            EncoderPrecision::Dense => Ok(None),
            EncoderPrecision::Auto => Ok((device.is_cpu()
                && i16_supported()
                && dtype == candle_core::DType::F32)
                .then_some(Quant::I16)),
            EncoderPrecision::I16 if !device.is_cpu() => Err(crate::Error::Input(
                "--encoder-precision i16 runs on the CPU only (use --device cpu, or dense on a GPU)"
                    .into(),
            )),
            EncoderPrecision::I16 if !i16_supported() => Err(crate::Error::Input(
                "--encoder-precision i16 needs an x86-64 CPU with AVX2, which this one lacks"
                    .into(),
            )),
            EncoderPrecision::I16 => Ok(Some(Quant::I16)),
            EncoderPrecision::I16Avx2
            | EncoderPrecision::I16Avx512vnni
            | EncoderPrecision::Bf16Avx512
                if !device.is_cpu() =>
            {
                Self::I16.quant(dtype, device)
            }
            EncoderPrecision::I16Avx2
            | EncoderPrecision::I16Avx512vnni
            | EncoderPrecision::Bf16Avx512 => force_i16_kernel(self),
        }
    }
}

/// An explicit i16 kernel, selected for the whole process (the products
/// read it at run time), or an error naming what this CPU lacks.
#[cfg(target_arch = "x86_64")]
fn force_i16_kernel(p: EncoderPrecision) -> crate::Result<Option<crate::model::Quant>> {
    use crate::kernels::i16_gemm::{set_kernel, Kernel};
    let k = match p {
        EncoderPrecision::I16Avx512vnni => Kernel::Avx512Vnni,
        EncoderPrecision::Bf16Avx512 => Kernel::Avx512Bf16,
        _ => Kernel::Avx2,
    };
    if !k.runs_here() {
        return Err(crate::Error::Input(format!(
            "--encoder-precision {}: this CPU lacks {}",
            k.name(),
            k.features()
        )));
    }
    set_kernel(k);
    Ok(Some(crate::model::Quant::I16))
}

#[cfg(not(target_arch = "x86_64"))]
fn force_i16_kernel(p: EncoderPrecision) -> crate::Result<Option<crate::model::Quant>> {
    Err(crate::Error::Input(format!(
        "--encoder-precision {p:?}: the i16 kernels need an x86-64 CPU"
    )))
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
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("").is_err());
    }

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
