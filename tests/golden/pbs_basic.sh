#!/bin/bash
#PBS -N dlcwatch-12
#PBS -S /bin/bash
#PBS -j oe
#PBS -o /dev/null
#PBS -r y
#PBS -l select=1:ncpus=6:ngpus=1:mem=24gb:gpu_model=a100
#PBS -l walltime=01:30:00
#PBS -q gpuq
#PBS -A lab-smith
#PBS -P smithlab
#PBS -m a -M lab@example.org
#PBS -l place=excl
# dlcwatch job 12: runs the worker, whose exit code becomes the job's.
exec >>'/scratch/dlcwatch/jobs/job12/worker.log' 2>&1
cd '/scratch/dlcwatch/jobs/job12' || exit 1  # PBS starts a job in the home folder
set -e
export PYTHONUNBUFFERED=1
module load cuda/12.1
source ~/miniconda3/etc/profile.d/conda.sh
conda activate dlc
exec apptainer exec --nv /images/deeplabcut.sif python3 -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'
