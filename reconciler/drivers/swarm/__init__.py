"""Swarm mode: the Service, Secret and Config kinds."""
