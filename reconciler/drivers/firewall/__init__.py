"""FirewallAllowList: allow-lists for published ports, enforced in Docker's DOCKER-USER chain.

`spec` (manifest values), `rules` (the rule model), `backend` (shared backend parts), `restore` and `iptc`
(the two backends), `detect` (backend choice, interfaces), `driver` (the Driver).
"""
