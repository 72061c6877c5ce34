"""ctxseg: context cross-entropy and Seg-GLGAN for unbalanced medical image segmentation.

Murugesan et al., "A context based deep learning approach for unbalanced medical image
segmentation", ISBI 2020 (arXiv 2001.02387).
"""

__version__ = "0.1.0"
