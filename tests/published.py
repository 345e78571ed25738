"""Published coefficient sets typed from their sources: the independent references the tests compare with."""

# Amsel, Persson, Musco & Gower (2025), arXiv:2505.16932, Algorithm 1, coeffs_list as printed (before the
# safety factor; the code then divides (a, b, c) by (1.01, 1.01**3, 1.01**5) for all but the last entry).
PE_PRINTED = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]

# KellerJordan/modded-nanogpt train_gpt.py (commit 0016a3c4), polar_express_coeffs,
# "Computed for num_iters=5, safety_factor=2e-2, cushion=2"; X / (||X||_F * (1 + 2e-2) + 1e-6).
PE5_PRINTED = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]

# CANS (Grishina, Smirnov & Rakhuba, arXiv:2506.10935) 5-step quintic set as used in
# greekinRoma/Unified_Newton_Schulz_Orthogonalization ComparativeExperiment/CANS.py (class CaNS), generated
# with the CANS reference code's delta-orthogonalization (delta = 0.99 in one step, then Remez on [0.01, 1.99]).
CANS_5 = [
    (8.462385123610193, -25.076703591296525, 18.604318451139527),
    (4.169671637309271, -3.0995520439584285, 0.57956324300095),
    (3.913676673069997, -2.920037812686962, 0.5590987905684336),
    (3.1710465180967007, -2.3777373620051665, 0.49752193655456894),
    (2.187030637313693, -1.5649500065194997, 0.4076449910177318),
]

# thib-s/flash-newton-schulz newton_schulz_triton.py, newton_schulz_triton_aol, ns_consts: the current Turbo-Muon
# set at HEAD, commit cdb03db0e6c59e82365426373a1601fadfdf7ab3 (2025-09-22, "fixed bug with A rescling and updated
# poly params"): the tuned coefficients truncated to 4 decimals.
TURBO_MUON = [
    ("4.6051", "-9.6552", "5.6769"),
    ("4.7505", "-6.0861", "2.1790"),
    ("2.7763", "-2.3190", "0.5523"),
    ("2.4231", "-2.2861", "0.8193"),
]

# The same set as first printed, at commit 46d13a305868f8474112ed97be436e904aa9b639 (float32 decimals),
# until cdb03db truncated it.
TURBO_MUON_7_DECIMALS = [
    ("4.6051846", "-9.6552305", "5.676981"),
    ("4.750538", "-6.086122", "2.1790226"),
    ("2.776319", "-2.3190296", "0.55232877"),
    ("2.423169", "-2.2861216", "0.81937317"),
]

# The first Turbo-Muon set, thib-s/flash-newton-schulz newton_schulz_triton.py at commit
# b73111d0cd037ae036022357d32bf23197148a36 (first step: A <- A / s, rows only); the same digits are
# NVIDIA-NeMo/Emerging-Optimizers muon_utils.py _COEFFICIENT_SETS["aol"] (commit a045ea1a).
TURBO_MUON_V0 = [
    ("4.0098", "-7.0585", "2.4635"),
    ("3.4585", "-5.5479", "2.5959"),
    ("2.7573", "-3.2939", "1.4254"),
    ("2.7215", "-3.0494", "1.3169"),
]

# gram-newton-schulz 0.1.6 (PyPI wheel, sha256 5608c834...c1c) gram_newton_schulz/coefficients.py:
# _unmodified_polar_express_coefficients (the first five of Amsel et al.'s printed list) and safety_factor;
# POLAR_EXPRESS_COEFFICIENTS = [(a / 1.05, b / 1.05**3, c / 1.05**5) for each].
GNS_UNMODIFIED_PE = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
]
GNS_SAFETY_FACTOR = 1.05

# NVIDIA-NeMo/Emerging-Optimizers muon_utils.py _COEFFICIENT_SETS["cubic5"] (pull request #217; (a, b, 0.0)
# per step), read in verbatim third-party copies of the table; relaxed cubic of Huang (2026), arXiv:2606.00371.
NEMO_CUBIC5 = [
    ("3.3656576", "-3.3420992"),
    ("2.5744352", "-1.4957376"),
    ("2.5368962", "-1.4312570"),
    ("2.4418906", "-1.2764040"),
    ("2.2230472", "-0.9630650"),
]

# NVIDIA-NeMo/Emerging-Optimizers muon_utils.py _COEFFICIENT_SETS["cans"], read in the fork
# plugyawn/Emerging-Optimizers at commit 0b14b4b49d9f0d4bd314c8f70d45f78072766d2f (CANS, arXiv:2506.10935).
NEMO_CANS = [
    ("8.4703", "-25.1081", "18.6293"),
    ("4.1828", "-3.1087", "0.5806"),
    ("3.9619", "-2.9541", "0.5630"),
    ("3.2866", "-2.4647", "0.5074"),
    ("2.2737", "-1.6447", "0.4162"),
]
