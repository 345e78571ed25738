"""Muon with any nsiter schedule, its AdamW companion, its distributed form, and what it sees in training.

``Muon`` orthogonalizes the momentum of matrix parameters with a Newton–Schulz schedule from the registry (or a
search result); ``MuonWithAuxAdam`` / ``muon_param_groups`` send embeddings, heads, biases and gains to AdamW;
``DistributedMuon`` spreads the work over ``torch.distributed`` ranks with ZeRO-1 sharded state;
``momentum_spectra`` records the spectra Muon sees during training (read them back with :mod:`nsiter.spectra`).
The training problems of the benchmark are an experiment: ``experiments/training.py``.
"""

from nsiter.optim.distributed import DistributedMuon, assign_owners
from nsiter.optim.muon import ADJUST_LR, Muon, MuonWithAuxAdam, muon_param_groups, update_scale
from nsiter.optim.spectra import momentum_spectra

__all__ = [
    "ADJUST_LR",
    "DistributedMuon",
    "Muon",
    "MuonWithAuxAdam",
    "assign_owners",
    "momentum_spectra",
    "muon_param_groups",
    "update_scale",
]
