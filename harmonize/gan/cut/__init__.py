"""CUT and FastCUT (Park, Efros, Zhang and Zhu 2020): their config, networks and training recipe."""
