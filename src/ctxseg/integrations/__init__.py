"""Bridges from ctxseg's losses to other training frameworks (optional extras).

- :mod:`ctxseg.integrations.nnunet`: nnU-Net v2 trainers with the context loss
  (``pip install 'ctxseg[nnunet]'``).
"""
