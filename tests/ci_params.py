"Small parameters with which tests/test_notebooks.py runs every experiment notebook (each must finish in minutes on 2 CPU cores)."
CI_PARAMS = {
    "00f_report.ipynb": {"epochs": 1},
    "01_testbeds.ipynb": {"epochs": 3},
    "02_rare_spurious.ipynb": {"source": "sklearn", "ns": [0, 10], "patterns": ["S1", "S3", "R3"], "seeds": [0, 1], "archs": ["MLP", "CNN"], "arch_seeds": [0], "arch_ns": [0, 10], "epochs": 3, "deletion_ns": [10], "lissa_depth": 10, "weight_decays": [0.0, 0.01], "noise_sigmas": [0.0, 0.3], "mia_shadows": 2, "sensitivity_ps": [0.0, 0.5], "cache_dir": ""},
    "03_masktune.ipynb": {"source": "sklearn", "n_train": None, "seeds": [0], "ablation_seeds": [0], "epochs": 2, "n_show": 3, "ablate_epochs": [1], "ablate_n_train": [], "ablate_factors": ["small regime"], "ks": [], "ft_epochs": [2], "max_iterations": 1, "diag_epochs": 1},
    "04_data_mixing.ipynb": {"source": "sklearn", "n_train": 2000, "seeds": [0], "erm_epochs": 1, "ft_epochs": 1, "ll_epochs": 1, "dispel_s": [1.0, 0.8], "dispel_alpha": [1.0, 0.6], "dispel_C": [1.0, 0.1], "n_fits": 2, "pool_size": 500, "ablate_lams": [0.5], "ablate_beta": [], "ablate_ps": [], "ablate_draws": [], "ablate_epochs": 1, "toy_n": 500, "toy_seeds": [0, 10], "n_show": 3, "missing": "drop", "dispel_s_wide": [1.0, 0.5]},
    "05_ule.ipynb": {"source": "sklearn", "n_train": None, "seeds": [0], "epochs": 2, "warmup": 1, "sweep_seeds": [0], "lams": [3.0], "options": ["reimplementation"], "n_show": 3, "bench_reps": 1},
    "06_benchmark.ipynb": {"source": "sklearn", "n_train": None, "seeds": [0], "epochs": 2, "jtt_T": 1, "jtt_lam_up": 5, "mix_epochs": 1, "dispel_s": [1.0, 0.8], "dispel_alpha": [1.0, 0.6], "head_C": [1.0, 0.1], "n_fits": 2, "pool_size": 500, "birds_n_train": 200, "birds_n_valid": 80, "birds_n_test": 80, "birds_epochs": 2, "birds_seeds": [0]},
}
