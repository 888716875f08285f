//! `pipeline launch` and `pipeline status`: turns their flags into the library's options and
//! prints what comes back.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::cli::LaunchCommand;
use pipeline::config::PipelineConfig;
use pipeline::launch::k8s;
use pipeline::launch::slurm::{self, SlurmLaunch};

pub fn launch(scheduler: LaunchCommand) -> Result<()> {
    match scheduler {
        LaunchCommand::Slurm {
            config,
            tasks,
            max_parallel,
            partition,
            scripts_dir,
            max_array_size,
            cpus_per_task,
            dry_run,
        } => {
            let launch = SlurmLaunch {
                config,
                tasks,
                max_parallel,
                partition,
                scripts_dir,
                max_array_size,
                cpus_per_task,
            };
            let scripts = slurm::scripts(&launch)?;
            if dry_run {
                for s in &scripts {
                    println!(
                        "# {} (sbatch --parsable [--dependency=afterok:PREVIOUS])\n{}",
                        s.path.display(),
                        s.text
                    );
                }
                return Ok(());
            }
            println!("submitted jobs {}", slurm::submit(&scripts)?.join(" "));
        }
        LaunchCommand::K8s { launch, out } => {
            let manifests = k8s::manifests(&launch)?;
            match out {
                Some(dir) => {
                    for path in k8s::write(&manifests, &dir)? {
                        println!("wrote {}", path.display());
                    }
                    println!("apply with: kubectl apply -f {}", dir.display());
                }
                None => {
                    let values: Vec<_> = manifests.into_iter().map(|m| m.value).collect();
                    print!("{}", pipeline::launch::yaml::documents(&values));
                }
            }
        }
    }
    Ok(())
}

pub struct StatusArgs<'a> {
    pub tasks: Option<usize>,
    pub json: bool,
    pub wait: Option<&'a str>,
    pub poll_seconds: u64,
    pub timeout: Option<u64>,
    pub failed_grace: u64,
}

pub fn status(config: &Path, args: StatusArgs) -> Result<()> {
    let config = PipelineConfig::load(config)?;
    let run = match (args.wait, args.tasks) {
        (Some(stage), Some(tasks)) => pipeline::status::wait_for(
            &config,
            tasks,
            stage,
            pipeline::status::WaitOptions {
                every: Duration::from_secs(args.poll_seconds.max(1)),
                timeout: args.timeout.map(Duration::from_secs),
                failed_grace: Duration::from_secs(args.failed_grace),
            },
        )?,
        _ => pipeline::status::status(&config, args.tasks)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        print!("{}", run.render());
    }
    Ok(())
}
