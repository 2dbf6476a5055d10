"Small parameters with which tests/test_notebooks.py runs every experiment notebook (each must finish in minutes on 2 CPU cores)."
CI_PARAMS = {
    "00_core.ipynb": {"epochs": 1},
    "01_data.ipynb": {"epochs": 3},
    "03_masktune.ipynb": {"seeds": [0], "epochs": 3, "n_show": 3},
}
