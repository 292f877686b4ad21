"""Near-neighbour index for binary hashes and exact index for cryptographic hashes and URLs."""
