"""The SLURM executor: job scripts, one status call per poll, states mapped to outcomes."""
