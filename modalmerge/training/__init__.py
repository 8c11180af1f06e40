"""Training: the Trainer loop, losses by target modality, checkpoints, data parallelism.

::

    from modalmerge.training import Trainer
    history = Trainer(model, checkpoint_dir="models/exp").train(train_loader, val_loader, epochs=30)
"""

from modalmerge.training.checkpoint import load_checkpoint, save_checkpoint
from modalmerge.training.distributed import launch_command
from modalmerge.training.losses import LOSSES, make_loss, register_loss
from modalmerge.training.trainer import Trainer

__all__ = [
    "LOSSES",
    "Trainer",
    "launch_command",
    "load_checkpoint",
    "make_loss",
    "register_loss",
    "save_checkpoint",
]
