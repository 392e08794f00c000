#!/bin/bash
#SBATCH --job-name=dlcwatch-12
#SBATCH --output="/scratch/dlcwatch/jobs/job12/worker.log"
#SBATCH --open-mode=append
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=6
#SBATCH --mem=24G
#SBATCH --time=01:30:00
#SBATCH --partition=gpu
#SBATCH --account=lab-smith
#SBATCH --qos=normal
#SBATCH --gres=gpu:a100:1
#SBATCH --constraint=avx2&cuda12
#SBATCH --mail-type=FAIL
#SBATCH --exclude=node13
# dlcwatch job 12: runs the worker, whose exit code becomes the job's.
set -e
export PYTHONUNBUFFERED=1
module load cuda/12.1
source ~/miniconda3/etc/profile.d/conda.sh
conda activate dlc
exec apptainer exec --nv /images/deeplabcut.sif python3 -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'
