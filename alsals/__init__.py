"""ALSALS and its family as torch.optim optimizers, one package.

  alsals.ALSALS, AdamSLS, SGDSLS, PLASLS   the Armijo line searches (alsals/alsals.py, the variants in
                                           alsals/variants.py, the arithmetic in alsals/_functional.py)
  alsals.MuonAdamW, MuonSLS                torch's Muon + AdamW as one optimizer; the search on Muon's
                                           direction (alsals/muon.py)
  alsals.LineSearchReference               the plain twin that follows the papers (alsals/alsals_reference.py)

Papers: P. Kenneweg, T. Kenneweg, B. Hammer, "Improving Line Search Methods for Large Scale Neural Network
Training", 2024 (ALSALS); P. Kenneweg, L. Galli, T. Kenneweg, B. Hammer, "Faster Convergence for Transformer
Fine-tuning with Line Search Methods", 2023 (SGD+SLS, ADAM+SLS, PLASLS).
"""
from .alsals import ALSALS
from .variants import AdamSLS, SGDSLS, PLASLS
from .muon import MuonAdamW, MuonSLS
from .alsals_reference import LineSearchReference

OPTIMIZERS = {'alsals': ALSALS, 'adamsls': AdamSLS, 'sgdsls': SGDSLS, 'plasls': PLASLS}

__all__ = ['ALSALS', 'AdamSLS', 'SGDSLS', 'PLASLS', 'MuonAdamW', 'MuonSLS', 'LineSearchReference',
           'OPTIMIZERS']
