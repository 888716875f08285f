//! `trainer`: command-line entry point; parses arguments and calls into the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use trainer::device::{DeviceChoice, runtime_info};

/// The jielong trainer: Llama-style language models on libtorch, on a GPU or the CPU.
#[derive(Debug, Parser)]
#[command(name = "trainer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what libtorch sees (CUDA devices, cuDNN, CPU threads) and run a small matmul on
    /// the chosen device to prove the install works.
    Info {
        /// auto (first GPU if any, else CPU), cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Info { device, json } => {
            let info = runtime_info(device)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "jielong trainer {}, libtorch via tch 0.24",
                    env!("CARGO_PKG_VERSION")
                );
                println!("  CUDA available : {}", info.cuda_available);
                println!("  CUDA devices   : {}", info.cuda_devices);
                println!("  cuDNN          : {}", info.cudnn_available);
                println!("  CPU threads    : {}", info.cpu_threads);
                println!("  device         : {}", info.selected_device);
                println!("  smoke test     : {}", info.smoke_test);
            }
        }
    }
    Ok(())
}
