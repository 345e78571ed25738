"""Muon with any nsiter schedule, its AdamW companion, its distributed form, and what it sees in training.

``Muon`` orthogonalizes the momentum of matrix parameters with a Newton–Schulz schedule from the registry (or a
search result); ``MuonWithAuxAdam`` / ``muon_param_groups`` send embeddings, heads, biases and gains to AdamW;
``DistributedMuon`` spreads the work over ``torch.distributed`` ranks with ZeRO-1 sharded state (for replicated,
data-parallel models); ``Muon`` itself steps FSDP2-sharded parameters with each matrix orthogonalized on one owner
rank (:mod:`nsiter.optim.fsdp`); ``QKClip`` adds Kimi K2's QK-Clip (MuonClip, :mod:`nsiter.optim.clip`);
``momentum_spectra`` records the spectra Muon sees during training (read them back with :mod:`nsiter.spectra`).
The training problems of the benchmark are an experiment: ``experiments/training.py``.
"""

from nsiter.optim.clip import AttentionHeads, MaxLogitRecorder, QKClip, max_logits
from nsiter.optim.distributed import DistributedMuon
from nsiter.optim.fsdp import apply_on_owners, assign_owners
from nsiter.optim.muon import ADJUST_LR, METHODS, Muon, MuonWithAuxAdam, muon_param_groups, update_scale
from nsiter.optim.spectra import momentum_spectra

__all__ = [
    "ADJUST_LR",
    "METHODS",
    "AttentionHeads",
    "DistributedMuon",
    "MaxLogitRecorder",
    "Muon",
    "MuonWithAuxAdam",
    "QKClip",
    "apply_on_owners",
    "assign_owners",
    "max_logits",
    "momentum_spectra",
    "muon_param_groups",
    "update_scale",
]
