"""Imported by a local cluster's fork server: decode, hash and search once, so that the compiled
kernels (PDQ, the Hamming index) and decoder plugins are loaded there, and every worker forked from
it starts warm instead of paying for them on its first partition.

Last of the fork server's preloads (``service.WORKER_MODULES``): it forgets the settings read meanwhile,
so that each worker reads its own (the cluster's environment), not those of the first cluster the
fork server started for (a later cluster of the same process, e.g. another SEAWALL_HOME or database).
"""

from __future__ import annotations

import io

from seawall.config import reset_settings


def warm_up() -> None:
    import numpy as np

    from seawall.index.hamming import HammingIndex
    from seawall.media.memfile import memory_file
    from seawall.media.synthetic import benign_image
    from seawall.signals.hashing import hash_file

    buffer = io.BytesIO()
    benign_image(0, 64, 48).save(buffer, format="JPEG")
    with memory_file(buffer.getvalue()) as path:
        hashed = hash_file(path, dihedral=True)
    index = HammingIndex(256)
    index.add(np.array([1], dtype=np.int64), np.zeros((1, 32), dtype=np.uint8))
    codes = np.frombuffer(bytes.fromhex("".join(hashed["pdq_dihedral"])), dtype=np.uint8).reshape(-1, 32)
    index.search(codes, 31)
    index.close()


warm_up()
reset_settings()
