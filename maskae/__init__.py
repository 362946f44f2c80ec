"""maskae — anomaly detection with masked autoencoders.

>>> from maskae import MaskedAutoencoderDetector
>>> # MaskedAutoencoderDetector(random_state=0).fit(X_train).anomaly_score(X_new)
"""

import os

# Torch's OpenMP threads spin while idle; on a shared 2-core machine that slowed small fits many
# times over. Passive waiting must be chosen before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from maskae.detector import MaskedAutoencoderDetector  # noqa: E402

__all__ = ["MaskedAutoencoderDetector"]
__version__ = "0.1.0"
