//! `trainer`: command-line entry point; parses arguments (`cli`), calls into the library and
//! prints what it reports.

mod cli;

use anyhow::{Context, Result, bail};
use clap::Parser;
use trainer::engine::config::Precision;
use trainer::engine::device::runtime_info;
use trainer::post::config::Task;
use trainer::post::{dpo, grpo, kto, reward, score, sft};
use trainer::pretrain::Trainer;

use crate::cli::{Cli, Command};

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
                print!("{}", info.render());
            }
        }
        Command::Pretrain(args) => {
            let (run, resume, faults) = args.load()?;
            let mut trainer = Trainer::new(run, resume, faults)?;
            print!("{}", trainer.run()?.render());
        }
        Command::Sft(args) => {
            let (config, resume, faults) = args.load(Task::Sft)?;
            print!("{}", sft::run(&config, resume, faults)?.render());
        }
        Command::Dpo(args) => {
            let (config, resume, faults) = args.load(Task::Dpo)?;
            print!("{}", dpo::run(&config, resume, faults)?.render());
        }
        Command::Kto(args) => {
            let (config, resume, faults) = args.load(Task::Kto)?;
            print!("{}", kto::run(&config, resume, faults)?.render());
        }
        Command::Grpo(args) => {
            let (config, resume, faults) = args.load(Task::Grpo)?;
            print!("{}", grpo::run(&config, resume, faults)?.render());
        }
        Command::Reward(args) => {
            let (config, resume, faults) = args.load(Task::Reward)?;
            print!("{}", reward::run(&config, resume, faults)?.render());
        }
        Command::Score {
            model,
            input,
            output,
            device,
        } => {
            let report = score::score_to(&model, &input, output.as_deref(), device.resolve()?)?;
            eprint!("{}", report.render());
            if report.failed > 0 {
                bail!(
                    "{} rows of {} could not be scored",
                    report.failed,
                    input.display()
                );
            }
        }
        Command::MergeLora { base, adapter, out } => {
            trainer::post::merge_lora(&base, &adapter, &out).with_context(|| {
                format!(
                    "merging {} into {} as {}",
                    adapter.display(),
                    base.display(),
                    out.display()
                )
            })?;
            println!("merged {} into {}", adapter.display(), out.display());
        }
        Command::Generate {
            model,
            prompt,
            sampling,
            no_cache,
            device,
            json,
        } => {
            let out = trainer::model::sample::generate_from_dir(
                &model,
                &prompt,
                sampling.params(),
                !no_cache,
                device.resolve()?,
                Precision::Auto,
            )
            .with_context(|| format!("generating with {}", model.display()))?;
            if json {
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("{}{}", prompt, out.text);
            }
        }
        Command::Bench(args) => {
            let report = trainer::pretrain::bench::run(args.load()?, args.warmup, args.steps)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.render(&args.config));
            }
        }
        Command::Report { runs, out } => {
            trainer::io::report::report(&runs, &out)?;
            println!("wrote {}", out.display());
        }
        Command::GenerateCandidates(args) => {
            let model = args.model.clone();
            let (job, client) = args.job()?;
            let summary = trainer::candidates::run(&job, client.as_ref())
                .with_context(|| format!("generating candidates with {}", model.display()))?;
            print!("{}", summary.render());
            if !summary.failed.is_empty() {
                eprint!("{}", summary.render_failures());
                bail!(
                    "{} prompt(s) got no item (above); the others were posted",
                    summary.failed.len()
                );
            }
        }
        Command::Prelabel(args) => {
            let (job, client) = args.job()?;
            let summary = trainer::candidates::prelabel::run(&job, &client)
                .with_context(|| format!("pre-labelling with {}", job.model_dir.display()))?;
            print!("{}", summary.render());
        }
        Command::ExportHf { checkpoint, out } => {
            trainer::io::export::export_hf(&checkpoint, &out).with_context(|| {
                format!("exporting {} to {}", checkpoint.display(), out.display())
            })?;
            println!("exported {} to {}", checkpoint.display(), out.display());
        }
    }
    Ok(())
}
