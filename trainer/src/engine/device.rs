//! Which device a run uses and what the libtorch runtime offers.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use tch::{Cuda, Device, Kind, Tensor};

/// A user's device choice: `auto` takes the first GPU when there is one. In configs it is
/// the same string as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(index)) => Ok(Self::Cuda(index)),
                _ => Err(format!(
                    "unknown device {s:?}: use auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice against the GPUs libtorch sees; asking for a GPU that is not
    /// there is an error, not a silent fall-back to the CPU.
    pub fn resolve(self) -> Result<Device> {
        let gpus = Cuda::device_count() as usize;
        match self {
            Self::Auto if gpus > 0 => Ok(Device::Cuda(0)),
            Self::Auto | Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(i) if i < gpus => Ok(Device::Cuda(i)),
            Self::Cuda(i) => bail!(
                "device cuda:{i} requested but libtorch sees {gpus} CUDA device(s); use --device cpu or check the driver"
            ),
        }
    }
}

/// What `trainer info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cpu_threads: i32,
    pub selected_device: String,
    /// Result of a small matmul on the selected device, checked against the exact value.
    pub smoke_test: String,
}

impl RuntimeInfo {
    /// What `trainer info` prints without `--json`.
    pub fn render(&self) -> String {
        format!(
            "jielong trainer {}, libtorch via tch 0.24\n  CUDA available : {}\n  CUDA devices   : {}\n  cuDNN          : {}\n  CPU threads    : {}\n  device         : {}\n  smoke test     : {}\n",
            env!("CARGO_PKG_VERSION"),
            self.cuda_available,
            self.cuda_devices,
            self.cudnn_available,
            self.cpu_threads,
            self.selected_device,
            self.smoke_test
        )
    }
}

/// Probes libtorch and runs a tiny computation on the chosen device.
pub fn runtime_info(choice: DeviceChoice) -> Result<RuntimeInfo> {
    let device = choice.resolve()?;
    Ok(RuntimeInfo {
        cuda_available: Cuda::is_available(),
        cuda_devices: Cuda::device_count(),
        cudnn_available: Cuda::cudnn_is_available(),
        cpu_threads: tch::get_num_threads(),
        selected_device: format!("{device:?}"),
        smoke_test: smoke_test(device)?,
    })
}

/// `ones(64, 64) @ ones(64, 64)` sums to 64^3 exactly in fp32.
fn smoke_test(device: Device) -> Result<String> {
    let a = Tensor::ones([64, 64], (Kind::Float, device));
    let sum = a.matmul(&a).sum(Kind::Float).to_device(Device::Cpu);
    let value = f64::try_from(sum)?;
    if value != 262_144.0 {
        bail!("matmul on {device:?} gave {value}, expected 262144: the libtorch install is broken");
    }
    Ok(format!("ok (64x64 matmul on {device:?})"))
}
