"""Test session set-up: each real server (Tansu, Azurite, MariaDB) starts once per session.

The server fixtures live in ``tests/servers/``; every test gets its own topic,
blob container or database from them, so tests cannot see each other's data.
"""

pytest_plugins = [
    "tests.servers.tansu",
    "tests.servers.azurite",
    "tests.servers.mariadb",
]
