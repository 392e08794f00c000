"""The PBS executor (OpenPBS, PBS Professional): job scripts, one status call per poll, states mapped to outcomes."""
