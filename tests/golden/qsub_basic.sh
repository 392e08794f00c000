#!/bin/bash
#$ -N dlcwatch-12
#$ -S /bin/bash
#$ -o /dev/null
#$ -j y
#$ -r y
#$ -pe smp 6
#$ -l h_rt=1:30:00
#$ -l h_vmem=4G
#$ -l gpu=1
#$ -q gpu.q
#$ -P smithlab
#$ -m a -M lab@example.org
#$ -l h=!node13
# dlcwatch job 12: runs the worker, whose exit code becomes the job's.
exec >>'/scratch/dlcwatch/jobs/job12/worker.log' 2>&1
set -e
export PYTHONUNBUFFERED=1
module load cuda/12.1
source ~/miniconda3/etc/profile.d/conda.sh
conda activate dlc
exec apptainer exec --nv /images/deeplabcut.sif python3 -m dlcwatch.worker '/scratch/dlcwatch/jobs/job12/spec.json'
