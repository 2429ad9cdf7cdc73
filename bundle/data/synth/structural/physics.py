# Copyright (c) 2026 brain_mri_eso_detection contributors. Licensed under the Apache License, Version 2.0.
"""Settings and MR physics of the structural simulator: :data:`PRESETS`, :class:`Acquisition`, tissue relaxation
times and the signal equations of the T1-, T2- and FLAIR-weighted sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TISSUES = ("gm", "wm", "csf", "deep_gm", "wmh", "fluid", "gliosis", "flow_void")
# T1 (ms), T2 (ms), proton density per tissue; literature means at 1.5 and 3 T (e.g. Wansapura et al. 1999,
# Stanisz et al. 2005). ``fluid``: the interstitial fluid of EPVS and lacunes; ``gliosis``: a lacune's rim;
# ``wmh``: white-matter hyperintensity; ``deep_gm``: the basal ganglia and thalamus (shorter T2: iron).
RELAXATION = {
    1.5: {"gm": (1100.0, 95.0, 0.80), "wm": (650.0, 75.0, 0.69), "csf": (4000.0, 2000.0, 1.0),
          "deep_gm": (950.0, 80.0, 0.77), "wmh": (1000.0, 140.0, 0.80), "fluid": (3700.0, 1600.0, 0.98),
          "gliosis": (1150.0, 160.0, 0.82)},
    3.0: {"gm": (1450.0, 85.0, 0.80), "wm": (850.0, 70.0, 0.69), "csf": (4200.0, 1900.0, 1.0),
          "deep_gm": (1200.0, 65.0, 0.77), "wmh": (1300.0, 130.0, 0.80), "fluid": (3900.0, 1500.0, 0.98),
          "gliosis": (1450.0, 150.0, 0.82)},
}  # fmt: skip

# Every value a preset may set. ``train``/``validation`` are the training distribution; every other preset moves
# one factor outside it (held out from training).
_BASE = {
    "b0": (1.5, 3.0),
    "inplane": (0.5, 1.0),  # mm
    "slice": (1.0, 3.0),  # mm, when not isotropic
    "p_isotropic": 0.4,  # otherwise slices of ``slice`` mm
    "min_voxel_mm3": 0.3,  # finer draws are redrawn (memory)
    "pose_deg": 15.0,  # head rotation about each axis (uniform +/-)
    "warp_mm": (2.0, 5.0),
    "t1_kinds": ("mprage", "se"),
    "t2_te_ms": (80.0, 120.0),
    "flair_null_error": (0.0, 0.06),  # relative error of FLAIR's inversion time against the CSF null
    "relax_jitter": 0.06,  # log-normal spread of each tissue's T1 and T2 per scan (half that for the T1 of fluids)
    "p_wide": 0.2,  # share of scans whose tissue signals are drawn at random (SynthSeg's spirit)
    "snr": (10.0, 40.0),
    "bias": (0.05, 0.35),
    "psf_fwhm_vox": (0.5, 1.2),
    "atrophy": (0.0, 0.6),
    "wmh_load": (0.0, 0.6),
    "epvs": {"basal_ganglia": (1, 40), "centrum_semiovale": (2, 200), "hippocampus": (0, 15), "midbrain": (0, 6)},
    "p_no_epvs": 0.05,
    "lacunes": (0, 5),
    "p_rim": 0.6,
    "bg_base_pvs": (0, 3),  # wide, short perivascular spaces at the base of the basal ganglia (lacune mimics)
    "flow_voids": (2, 8),
}
PRESETS = {
    "train": {},
    "validation": {},
    # the brain-mask network's extra training scans (docs/brain_mask.md): head pose, atrophy and slice thickness
    # wider than thick_slices, severe_atrophy and oblique; its voxels no finer than 0.8 mm (it works at 2 mm)
    "train_wide": {"pose_deg": 35.0, "atrophy": (0.0, 1.0), "wmh_load": (0.0, 1.0), "inplane": (0.8, 1.3),
                   "slice": (1.0, 5.0)},
    "thick_slices": {"inplane": (0.8, 1.0), "slice": (3.5, 4.5), "p_isotropic": 0.0},
    "other_contrast": {"t1_kinds": ("spgr",), "t2_te_ms": (130.0, 160.0), "flair_null_error": (0.12, 0.2),
                       "p_wide": 0.0},
    "high_load": {"epvs": {"basal_ganglia": (41, 80), "centrum_semiovale": (250, 400), "hippocampus": (16, 25),
                           "midbrain": (7, 10)}, "p_no_epvs": 0.0, "lacunes": (6, 10)},
    "no_lesions": {"epvs": {"basal_ganglia": (0, 0), "centrum_semiovale": (0, 0), "hippocampus": (0, 0),
                            "midbrain": (0, 0)}, "p_no_epvs": 1.0, "lacunes": (0, 0), "bg_base_pvs": (0, 0)},
    "severe_atrophy": {"atrophy": (0.7, 1.0), "wmh_load": (0.7, 1.0)},
    "low_snr": {"snr": (5.0, 9.0)},
    "oblique": {"pose_deg": 30.0, "min_pose_deg": 20.0},
}  # fmt: skip
HELD_OUT = ("thick_slices", "other_contrast", "high_load", "no_lesions", "severe_atrophy", "low_snr", "oblique")
MODALITIES = ("t1", "t2", "flair")


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown structural preset {name!r}; known: {sorted(PRESETS)}")
    return {**_BASE, **PRESETS[name]}


@dataclass
class Acquisition:
    """One scan's acquisition and subject settings (all drawn by :func:`draw_acquisition`)."""

    preset: str
    b0: float
    spacing: tuple[float, float, float]
    sequences: dict  # modality -> {"kind", "tr_ms", "te_ms", "ti_ms" or "flip_deg"}
    wide: bool  # tissue signals drawn at random instead of from the sequences
    relax_jitter: float
    snr: dict  # modality -> SNR (white matter / Rician sigma)
    bias: dict  # modality -> half-amplitude of the log bias field
    psf_fwhm_vox: float
    pose_deg: float
    warp_mm: float
    atrophy: float
    wmh_load: float
    epvs: dict  # region -> number of EPVS to place
    lacunes: int
    p_rim: float
    bg_base_pvs: int
    flow_voids: int
    extra: dict = field(default_factory=dict)


def _count(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Log-uniform integer in [lo, hi] (many scans with few objects, some with hundreds)."""
    if hi <= lo:
        return int(lo)
    return int(np.floor(np.exp(rng.uniform(np.log(lo + 1), np.log(hi + 2))) - 1))


def draw_acquisition(name: str, rng: np.random.Generator) -> Acquisition:
    p = preset(name)
    b0 = float(rng.choice(p["b0"]))
    while True:
        inplane = float(rng.uniform(*p["inplane"]))
        slc = inplane if rng.random() < p["p_isotropic"] else float(rng.uniform(*p["slice"]))
        if inplane * inplane * slc >= p["min_voxel_mm3"]:
            break
    seqs = {"t1": _t1_sequence(str(rng.choice(p["t1_kinds"])), b0, rng)}
    seqs["t2"] = {"kind": "fse", "tr_ms": float(rng.uniform(3000, 6000)), "te_ms": float(rng.uniform(*p["t2_te_ms"]))}
    tr = float(rng.uniform(7000, 10000))
    t1_csf = RELAXATION[b0]["csf"][0]
    null = t1_csf * np.log(2.0 / (1.0 + np.exp(-tr / t1_csf)))
    err = float(rng.uniform(*p["flair_null_error"])) * float(rng.choice([-1.0, 1.0]))
    seqs["flair"] = {"kind": "ir", "tr_ms": tr, "te_ms": float(rng.uniform(80, 140)), "ti_ms": float(null * (1 + err))}
    pose_lo = float(p.get("min_pose_deg", 0.0))
    pose = float(rng.uniform(pose_lo, p["pose_deg"]))
    no_epvs = rng.random() < p["p_no_epvs"]
    return Acquisition(
        preset=name,
        b0=b0,
        spacing=(round(inplane, 3), round(inplane, 3), round(slc, 3)),
        sequences={m: {k: (round(v, 1) if isinstance(v, float) else v) for k, v in s.items()} for m, s in seqs.items()},
        wide=bool(rng.random() < p["p_wide"]),
        relax_jitter=float(p["relax_jitter"]),
        snr={m: round(float(rng.uniform(*p["snr"])), 2) for m in MODALITIES},
        bias={m: round(float(rng.uniform(*p["bias"])), 3) for m in MODALITIES},
        psf_fwhm_vox=round(float(rng.uniform(*p["psf_fwhm_vox"])), 3),
        pose_deg=round(pose, 2),
        warp_mm=round(float(rng.uniform(*p["warp_mm"])), 2),
        atrophy=round(float(rng.uniform(*p["atrophy"])), 3),
        wmh_load=round(float(rng.uniform(*p["wmh_load"])), 3),
        epvs={r: 0 if no_epvs else _count(rng, *span) for r, span in p["epvs"].items()},
        lacunes=_count(rng, *p["lacunes"]),
        p_rim=float(p["p_rim"]),
        bg_base_pvs=int(rng.integers(p["bg_base_pvs"][0], p["bg_base_pvs"][1] + 1)),
        flow_voids=int(rng.integers(p["flow_voids"][0], p["flow_voids"][1] + 1)),
    )


def _t1_sequence(kind: str, b0: float, rng: np.random.Generator) -> dict:
    if kind == "mprage":  # inversion-prepared gradient echo, CSF near its null
        ti = rng.uniform(900, 1100) if b0 >= 3 else rng.uniform(800, 1000)
        return {"kind": "mprage", "tr_ms": float(rng.uniform(2000, 2500)), "te_ms": 3.0, "ti_ms": float(ti)}
    if kind == "se":
        return {"kind": "se", "tr_ms": float(rng.uniform(400, 700)), "te_ms": float(rng.uniform(8, 20))}
    if kind == "spgr":  # spoiled gradient echo (held out: no inversion, T1 weighting from the flip angle)
        return {"kind": "spgr", "tr_ms": float(rng.uniform(15, 25)), "te_ms": float(rng.uniform(3, 5)),
                "flip_deg": float(rng.uniform(20, 35))}
    raise ValueError(f"unknown T1-weighted sequence {kind!r}")


def signal(seq: dict, t1: float, t2: float, pd: float) -> float:
    """Magnitude signal of one tissue: spin echo ``PD (1 - e^(-TR/T1)) e^(-TE/T2)``; inversion recovery
    ``PD |1 - 2 e^(-TI/T1) + e^(-TR/T1)| e^(-TE/T2)``; spoiled gradient echo ``PD sin a (1 - E1) / (1 - cos a E1)
    e^(-TE/T2)`` (T2 stands in for T2*: TE is a few ms)."""
    tr, te = seq["tr_ms"], seq["te_ms"]
    decay = np.exp(-te / t2)
    if seq["kind"] in ("se", "fse"):
        return float(pd * (1.0 - np.exp(-tr / t1)) * decay)
    if seq["kind"] in ("ir", "mprage"):
        return float(pd * abs(1.0 - 2.0 * np.exp(-seq["ti_ms"] / t1) + np.exp(-tr / t1)) * decay)
    if seq["kind"] == "spgr":
        a, e1 = np.deg2rad(seq["flip_deg"]), np.exp(-tr / t1)
        return float(pd * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1) * decay)
    raise ValueError(f"unknown sequence kind {seq['kind']!r}")


def tissue_signals(acq: Acquisition, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per modality, the noise-free signal of every tissue, scaled so that white matter is 1.

    Physics scans: each tissue's T1 and T2 are jittered (log-normal, ``relax_jitter``; half that for the T1 of CSF
    and fluid) and PD by +-3 %, then put
    through the modality's sequence. Wide scans (``acq.wide``): every tissue's signal is uniform in [0.05, 1.6]
    per modality (SynthSeg's spirit), except that fluid keeps close to CSF, gliosis to WMH, white matter is at least
    0.3, and fluid differs from white, grey and deep grey matter and WMH by at least 0.2, so that a labelled object
    stays visible wherever it lies. Flow voids (fast blood)
    give 2-15 % of white matter on the spin-echo sequences and 10-130 % on the gradient-echo T1 (inflow).
    """
    out = {}
    for mod, seq in acq.sequences.items():
        if acq.wide:
            while True:
                s = {t: float(rng.uniform(0.05, 1.6)) for t in ("gm", "wm", "csf", "deep_gm", "wmh")}
                s["fluid"] = s["csf"] * float(rng.uniform(0.85, 1.05))
                s["gliosis"] = s["wmh"] * float(rng.uniform(0.9, 1.1))
                tissue = [s[t] for t in ("wm", "gm", "deep_gm", "wmh")]  # around EPVS and lacunes
                if s["wm"] >= 0.3 and min(abs(s["fluid"] - v) for v in tissue) >= 0.2:
                    break
        else:
            s = {}
            for t, (t1, t2, pd) in RELAXATION[acq.b0].items():
                j1, j2 = np.exp(rng.normal(0.0, acq.relax_jitter, 2))
                j1 = np.sqrt(j1) if t in ("csf", "fluid") else j1  # free water's T1 varies little
                s[t] = signal(seq, t1 * j1, t2 * j2, pd * float(rng.uniform(0.97, 1.03)))
        gradient_echo = seq["kind"] in ("mprage", "spgr")
        s["flow_void"] = s["wm"] * float(rng.uniform(0.1, 1.3) if gradient_echo else rng.uniform(0.02, 0.15))
        wm = s["wm"]
        out[mod] = {t: round(v / wm, 5) for t, v in s.items()}
    return out
