__version__ = "0.1.0"
# spurnotes.core, .data and .benchmark of 0.0.1 resolve for one more release, warning where each name went (spurnotes/moved.py)
from .moved import install_old_modules as _install_old_modules
_install_old_modules()
