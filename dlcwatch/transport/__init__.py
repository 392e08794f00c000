"""How job files and videos reach a cluster that does not share our file systems: ssh, rsync, scratch."""
