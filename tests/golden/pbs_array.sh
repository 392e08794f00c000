#!/bin/bash
#PBS -N dlcwatch-40
#PBS -S /bin/bash
#PBS -j oe
#PBS -o /dev/null
#PBS -r y
#PBS -l select=1:ncpus=1:mem=2gb
#PBS -l walltime=02:00:00
#PBS -J 0-24%5
# dlcwatch job 40: runs the worker, whose exit code becomes the job's.
exec >>'/lab/jobs/array40/task-'"${PBS_ARRAY_INDEX}"'.log' 2>&1
cd '/lab/jobs/array40' || exit 1  # PBS starts a job in the home folder
set -e
export PYTHONUNBUFFERED=1
exec python -m dlcwatch.worker '/lab/jobs/array40/spec-'"${PBS_ARRAY_INDEX}"'.json'
