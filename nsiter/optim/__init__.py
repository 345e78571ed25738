"""Muon with any nsiter schedule, its AdamW companion, its distributed form, and what it sees in training.

``Muon`` orthogonalizes the momentum of matrix parameters with a Newton–Schulz schedule from the registry (or a
search result); ``MuonWithAuxAdam`` / ``muon_param_groups`` send embeddings, heads, biases and gains to AdamW;
``DistributedMuon`` spreads the work over ``torch.distributed`` ranks with ZeRO-1 sharded state; the spectra
functions turn momentum matrices recorded during training into test spectra.  Training problems for the
benchmark live in ``nsiter.optim.training``.
"""

from nsiter.optim.distributed import DistributedMuon, assign_owners
from nsiter.optim.muon import ADJUST_LR, Muon, MuonWithAuxAdam, muon_param_groups, update_scale
from nsiter.optim.spectra import (
    MeasuredSpectrum,
    load_spectra,
    measured_interval,
    measured_matrix,
    measured_spectrum,
    momentum_spectra,
)

__all__ = [
    "ADJUST_LR",
    "DistributedMuon",
    "MeasuredSpectrum",
    "Muon",
    "MuonWithAuxAdam",
    "assign_owners",
    "load_spectra",
    "measured_interval",
    "measured_matrix",
    "measured_spectrum",
    "momentum_spectra",
    "muon_param_groups",
    "update_scale",
]
