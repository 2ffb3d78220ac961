"""Neural models (UNet, emulator, thermalizer), DDPM functions and the checkpoint format."""
from .checkpoint import CheckpointError, describe_hardware, load_checkpoint, save_checkpoint, update_manifest
from .ddpm import NoiseSchedule, cosine_alphas_cumprod, denoise_heterogeneous
from .emulator import Emulator
from .normalization import ChannelNormalization
from .thermalizer import Thermalizer
from .unet import UNet, default_architecture

__all__ = [
    "ChannelNormalization",
    "CheckpointError",
    "Emulator",
    "NoiseSchedule",
    "Thermalizer",
    "UNet",
    "cosine_alphas_cumprod",
    "default_architecture",
    "denoise_heterogeneous",
    "describe_hardware",
    "load_checkpoint",
    "save_checkpoint",
    "update_manifest",
]
