//! `pipeline launch`: runs a config's stages on the schedulers users already have, as array
//! jobs whose tasks call `pipeline clean --tasks N` (each task finds its index in the
//! scheduler's environment). `slurm` writes sbatch scripts chained with `afterok`.

pub mod slurm;
