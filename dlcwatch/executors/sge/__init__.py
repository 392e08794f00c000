"""The Grid Engine executor: job scripts, one status call per poll, states mapped to outcomes."""
