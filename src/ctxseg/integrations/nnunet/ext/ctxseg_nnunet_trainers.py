"""ctxseg's nnU-Net trainers, for nnU-Net's search of the ``nnUNet_extTrainer`` folders.

Imported by nnU-Net as a top-level module (hence the absolute import and the distinctive
name); it defines nothing itself.
"""

from ctxseg.integrations.nnunet.trainers import (  # noqa: F401
    nnUNetTrainerContextCE,
    nnUNetTrainerContextCEOnly,
)
