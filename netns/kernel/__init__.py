"""Kernel primitives on pyroute2: namespaces, links, addresses, routes, sysctls. No cloud words here."""
