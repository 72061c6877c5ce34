"""The folder that ``nnUNet_extTrainer`` points at (``ctxseg nnunet-path`` prints it).

nnU-Net imports every module of this folder as a top-level module and looks for the trainer
by class name; the one module here re-exports ctxseg's trainers, so nnU-Net gets the very
classes of :mod:`ctxseg.integrations.nnunet.trainers`.
"""
