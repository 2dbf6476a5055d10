"Importable tasks for tests/test_seeds.py (the seed runner's workers import their function by name)."
import os, time
import torch

def train_tiny(seed, steps=30):
    "A small seeded training run: the final weights' sum (float64 of a float32 model)."
    from fastai.torch_core import set_seed
    set_seed(seed, reproducible=True)
    net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 20), torch.randint(0, 2, (64,))
    for _ in range(steps):
        opt.zero_grad(); torch.nn.functional.cross_entropy(net(x), y).backward(); opt.step()
    return dict(seed=seed, weights=sum(p.double().sum().item() for p in net.parameters()), threads=torch.get_num_threads(), pid=os.getpid())

def fail_on_two(seed):
    if seed == 2: raise ValueError(f"no good seed {seed}")
    return seed

def sleep_long(seed):
    time.sleep(60)
    return seed

def import_fastai_layers(seed):
    "Imports fastai.layers, which makes torch print its `torch.jit.script` deprecation notice."
    import fastai.layers
    return seed
