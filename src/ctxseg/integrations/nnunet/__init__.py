"""nnU-Net v2 trainers whose loss carries ctxseg's context cross-entropy (SPEC §6).

Importing this package does not import nnU-Net; the trainers live in
:mod:`ctxseg.integrations.nnunet.trainers` (needs ``pip install 'ctxseg[nnunet]'``).

- :mod:`.settings`: the ROI settings, read from ``CTXSEG_*`` environment variables or a plans
  entry (no nnU-Net needed).
- :mod:`.loss`: the loss modules, composed from nnU-Net's Dice and ctxseg's context CE.
- :mod:`.trainers`: ``nnUNetTrainerContextCE`` and ``nnUNetTrainerContextCEOnly``.
- :mod:`.cli`: ``ctxseg nnunet-path``, the folder to put in ``nnUNet_extTrainer``.

Recipe and details: ``docs/nnunet.md``.
"""
