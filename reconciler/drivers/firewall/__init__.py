"""FirewallAllowList: allow-lists for published ports, enforced in Docker's DOCKER-USER chain.

`spec` (manifest values), `rules` (the rule model), `readback` (lists read back from rules), `backend` (what
both backends share), `restore` and `iptc` (the two backends), `detect` (backend choice, interfaces),
`driver` (the Driver).
"""
