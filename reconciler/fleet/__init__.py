"""Many engines: Host placement and running a command over the Hosts of a fleet."""
