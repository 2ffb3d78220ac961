"""The thermalizer dashboard: a Panel app over the rollout engine (serve app/main.py)."""
