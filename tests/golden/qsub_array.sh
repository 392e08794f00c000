#!/bin/bash
#$ -N dlcwatch-40
#$ -S /bin/bash
#$ -o /dev/null
#$ -j y
#$ -r y
#$ -l h_rt=2:00:00
#$ -l mem_free=2G
#$ -t 1-25
#$ -tc 5
# dlcwatch job 40: runs the worker, whose exit code becomes the job's.
# Grid Engine numbers array tasks from 1, dlcwatch's task files from 0.
DLCWATCH_TASK=$((SGE_TASK_ID - 1))
exec >>'/lab/jobs/array40/task-'"${DLCWATCH_TASK}"'.log' 2>&1
set -e
export PYTHONUNBUFFERED=1
exec python -m dlcwatch.worker '/lab/jobs/array40/spec-'"${DLCWATCH_TASK}"'.json'
