"""The deliver stage: results and their manifest into the output tree, locally or on another machine."""
