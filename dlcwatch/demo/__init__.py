"""The demo and its helpers: synthetic videos and tiny DeepLabCut models made offline, for the demo and the tests."""
