"""Training of emulators and thermalizers, single process or under ``torchrun`` (DDP)."""
