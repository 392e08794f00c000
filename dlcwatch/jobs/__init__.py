"""Jobs: what a job is made of (spec, result, the files of a job) and how videos are packed into jobs."""
