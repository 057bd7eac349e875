"""The sync engine: the stages one sync of one connection goes through (see the README, "How a
sync works")."""
