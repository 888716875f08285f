//! Where this process stands among the job's: read from the variables `torchrun` sets
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), else from Slurm's
//! (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, rendezvous on the first host of
//! `SLURM_JOB_NODELIST`). With neither, or a world of one, the process trains alone.
//! Under torchrun the rendezvous store is its agent's (`TORCHELASTIC_USE_AGENT_STORE`).

use anyhow::{Context, Result, bail, ensure};

/// The default rendezvous port, as torchrun's.
pub const DEFAULT_PORT: u16 = 29500;

/// Who set the variables a [`World`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun, or the same variables set by hand.
    Torchrun,
    /// srun.
    Slurm,
}

/// This process's place in a multi-process job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes of this machine: the GPU it takes.
    pub local_rank: usize,
    /// Host and port of the rendezvous store, served by rank 0.
    pub master_addr: String,
    pub master_port: u16,
    pub launcher: Launcher,
    /// torchrun's agent already serves the store at the master address (rank 0 connects to
    /// it instead of serving one).
    pub agent_store: bool,
    /// torchrun's restart count: the keys of each attempt are kept apart.
    pub attempt: u64,
}

impl World {
    /// The world the environment describes; None for a single process.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`World::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let num = |name: &str| -> Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v:?} is not a non-negative integer"))
                })
                .transpose()
        };
        let port = || -> Result<u16> {
            match var("MASTER_PORT") {
                Some(p) => p
                    .trim()
                    .parse()
                    .with_context(|| format!("MASTER_PORT={p:?} is not a port number")),
                None => Ok(DEFAULT_PORT),
            }
        };
        let world = if let Some(rank) = num("RANK")? {
            let size = num("WORLD_SIZE")?.context("RANK is set but WORLD_SIZE is not")?;
            let master_addr = var("MASTER_ADDR").context("RANK is set but MASTER_ADDR is not")?;
            World {
                rank,
                size,
                local_rank: num("LOCAL_RANK")?.unwrap_or(rank),
                master_addr,
                master_port: port()?,
                launcher: Launcher::Torchrun,
                agent_store: var("TORCHELASTIC_USE_AGENT_STORE")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                attempt: num("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0) as u64,
            }
        } else if let Some(rank) = num("SLURM_PROCID")? {
            let size =
                num("SLURM_NTASKS")?.context("SLURM_PROCID is set but SLURM_NTASKS is not")?;
            let master_addr = match var("MASTER_ADDR") {
                Some(addr) => addr,
                None => {
                    let list = var("SLURM_JOB_NODELIST")
                        .or_else(|| var("SLURM_NODELIST"))
                        .context(
                            "SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST",
                        )?;
                    first_host(&list)?
                }
            };
            World {
                rank,
                size,
                local_rank: num("SLURM_LOCALID")?.unwrap_or(0),
                master_addr,
                master_port: port()?,
                launcher: Launcher::Slurm,
                agent_store: false,
                attempt: 0,
            }
        } else {
            return Ok(None);
        };
        ensure!(world.size > 0, "a world of size 0");
        ensure!(
            world.rank < world.size,
            "rank {} outside a world of size {}",
            world.rank,
            world.size
        );
        Ok((world.size > 1).then_some(world))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// The first host of a Slurm node list (`node[01-04,07],gpu5` -> `node01`).
pub fn first_host(list: &str) -> Result<String> {
    expand_nodelist(list)?
        .into_iter()
        .next()
        .with_context(|| format!("empty Slurm node list {list:?}"))
}

/// Every host of a Slurm node list, in order: comma-separated items, each a plain name or a
/// name with one or more bracketed ranges (`a[1-2]b[3,5]`); zero padding is kept.
pub fn expand_nodelist(list: &str) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for item in split_top_level(list)? {
        expand_item(item, &mut hosts)?;
    }
    Ok(hosts)
}

/// Splits at the commas outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        ensure!(
            (0..=1).contains(&depth),
            "unbalanced brackets in Slurm node list {list:?}"
        );
    }
    ensure!(
        depth == 0,
        "unbalanced brackets in Slurm node list {list:?}"
    );
    items.push(&list[start..]);
    Ok(items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect())
}

fn expand_item(item: &str, out: &mut Vec<String>) -> Result<()> {
    let Some(open) = item.find('[') else {
        out.push(item.to_string());
        return Ok(());
    };
    let close = item[open..]
        .find(']')
        .map(|i| open + i)
        .with_context(|| format!("unbalanced brackets in Slurm node name {item:?}"))?;
    let (prefix, ranges, rest) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let width = lo.len();
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("bad range {range:?} in Slurm node name {item:?}"))
        };
        let (a, b) = (parse(lo)?, parse(hi)?);
        if a > b {
            bail!("descending range {range:?} in Slurm node name {item:?}");
        }
        for n in a..=b {
            expand_item(&format!("{prefix}{n:0width$}{rest}"), out)?;
        }
    }
    Ok(())
}
