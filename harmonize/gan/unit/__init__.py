"""UNIT (Liu, Breuel and Kautz 2017): its config, networks and training recipe."""
