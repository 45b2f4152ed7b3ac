"""Private helpers shared by all of harmono: argument checks, devices, dtypes, atomic files, provenance.

Nothing here is public API; every other package may import it, and it imports no other part of harmono.
"""
