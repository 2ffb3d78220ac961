"""Short "what am I looking at" notes for students, one per system, in Markdown."""
from __future__ import annotations

COMMON = """
**Three runs start from the same state.** *Truth* is the numerical solver. *Emulator only* applies a
neural network, trained to predict one step, to its own output again and again. *Thermalized* is the
same emulator, but after every step a second network (the thermalizer, a denoising diffusion model
trained on true snapshots) estimates how "noisy" the state looks, as a noise level *s* out of 1000.
When *s* is above **s_init**, it removes noise down to **s_stop**. You can move both while it runs.

**Reading the plots.** The spectrum shows how energy is spread over scales; emulator errors usually
pile up first at high wavenumbers (small scales), on the right. The dashed line and grey band are
the truth's long-time average and its 5–95 % range. The MSE and correlation compare each run with
the truth; chaos makes even a perfect emulator drift apart after about a Lyapunov time (dotted
line), so after that only the statistics (spectrum, {measure}) should agree. A run that leaves the
stable band (dashed lines in the {measure} plot), stops moving ("frozen") or gets the wrong
spectrum is marked in its title and in the status line. The ticker tape counts the denoising steps
spent at each step.
"""

NOTES = {
    "ks": """
### Kuramoto–Sivashinsky equation
A 1D model of flame fronts and thin films: u_t + u u_x + u_xx + u_xxxx = 0 on a periodic line.
The u_xx term pumps energy in at large scales, u_xxxx damps small scales, and the u u_x term moves
energy between them, which makes the system chaotic. Each colour map is a space-time diagram:
position x goes up, time (emulator steps) goes right, and the colour is u. Cells merge and split
in a pattern that never repeats. The line plot below shows u(x) now for the three runs. The
tracked quantity is the energy, the mean of u²/2.
""",
    "kolmogorov": """
### Kolmogorov flow
A 2D incompressible fluid in a periodic box, stirred by a force that varies like sin(4y) and slowed
by viscosity and a linear drag. The colour shows the vorticity ω (how fast the fluid spins at each
point; red and blue spin in opposite directions). The forcing makes jets that break up into eddies,
which is turbulent and chaotic. The tracked quantity is the enstrophy, the mean of ω²/2, which
grows when small eddies become too strong.
""",
    "qg": """
### Two-layer quasi-geostrophic turbulence
A simple model of the ocean (or atmosphere) away from the equator: two stacked fluid layers on a
rotating planet, with a background current that is faster in the upper layer. That vertical shear
is unstable (baroclinic instability) and creates eddies about the size of the deformation radius,
which then merge into larger ones and into jets. The colour shows the potential vorticity anomaly
q of the chosen layer (toggle upper and lower in the controls), a quantity that each fluid parcel
carries along. The tracked quantity is the enstrophy, the depth-weighted mean of q²/2.
""",
}


def student_note(system: str, measure_name: str) -> str:
    """Return the Markdown note for ``system``, followed by how to read the plots."""
    return NOTES.get(system, "") + COMMON.format(measure=measure_name)
