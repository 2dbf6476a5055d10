"A test helper: fastai's `MixedPrecision` with the CPU's autocast, so precision tests run without a GPU."
import warnings
import torch
from torch.amp import GradScaler
from fastai.callback.fp16 import MixedPrecision

class CPUMixedPrecision(MixedPrecision):
    autocast_device = "cpu"   # what `spurnotes.learner.learner_precision` reads
    "fastai's `MixedPrecision` with the CPU's autocast and grad scaler (fastai's own autocasts CUDA, off on a CPU-only machine)."
    def before_fit(self):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')   # fastai's CUDA autocast/scaler, disabled here
            super().before_fit()
        dtype = torch.float16 if self.amp_mode.value == 'fp16' else torch.bfloat16
        self.autocast, self.learn.scaler = torch.autocast('cpu', dtype=dtype), GradScaler('cpu', enabled=dtype == torch.float16)
