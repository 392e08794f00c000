"""The watch stage: find videos in watched folders, wait for them to settle, probe and fingerprint them, admit them."""
