"""Signal types: cryptographic hashes, PDQ with dihedral variants, vPDQ; registry and plugins."""
