"""spurnotes.seeds: parallel seeds equal sequential ones, come back in seed order, a failing seed is named, `jobs=1` stays in
this process, and Ctrl-C leaves no worker behind."""
import os, signal, subprocess, sys, time
from pathlib import Path
import psutil
import pytest
from spurnotes.seeds import run_seeds, default_jobs, SeedError
from seed_tasks import train_tiny, fail_on_two

def test_parallel_equals_sequential_in_seed_order():
    seeds = [3, 0, 2, 1]
    seq = run_seeds(train_tiny, seeds, jobs=1)
    par = run_seeds(train_tiny, seeds, jobs=2)
    assert [r['seed'] for r in par] == seeds
    assert [r['weights'] for r in par] == [r['weights'] for r in seq]      # bit for bit on one machine
    assert {r['threads'] for r in par} == {1} and len({r['pid'] for r in par}) == 2 and os.getpid() not in {r['pid'] for r in par}

def test_jobs_1_is_the_sequential_path_in_this_process():
    out = run_seeds(train_tiny, [0, 1], jobs=1, steps=2)
    assert {r['pid'] for r in out} == {os.getpid()} and [r['seed'] for r in out] == [0, 1]

def test_a_failing_seed_is_named():
    for jobs in (1, 2):
        with pytest.raises(SeedError, match="seed 2 failed: ValueError: no good seed 2") as e: run_seeds(fail_on_two, [0, 1, 2, 3], jobs=jobs)
        assert isinstance(e.value.__cause__, ValueError) and e.value.seed == 2

def test_progress_and_bad_arguments(monkeypatch):
    seen = []
    run_seeds(train_tiny, [0, 1], jobs=1, progress=lambda s, d, n: seen.append((s, d, n)), steps=1)
    assert seen == [(0, 1, 2), (1, 2, 2)]
    with pytest.raises(ValueError, match="needs an importable function"): run_seeds(lambda s: s, [0, 1], jobs=2)
    monkeypatch.setenv('SPURNOTES_JOBS', '3'); assert default_jobs() == 3
    monkeypatch.setenv('SPURNOTES_JOBS', 'many')
    with pytest.raises(ValueError, match="SPURNOTES_JOBS='many': expected a whole number"): default_jobs()

def test_ctrl_c_leaves_no_worker_behind(tmp_path):
    script = tmp_path/'run.py'
    script.write_text("import sys; sys.path.insert(0, %r)\nfrom spurnotes.seeds import run_seeds\nfrom seed_tasks import sleep_long\n"
                      "print('start', flush=True)\nrun_seeds(sleep_long, [0, 1], jobs=2)\n" % str(Path(__file__).parent))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(p.pid)
    deadline = time.time() + 60
    while time.time() < deadline and len([c for c in parent.children(recursive=True) if 'spawn_main' in ' '.join(c.cmdline())]) < 2:
        time.sleep(0.5)
    workers = [c for c in parent.children(recursive=True) if 'spawn_main' in ' '.join(c.cmdline())]
    assert len(workers) == 2, "the workers did not start"
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    assert 'KeyboardInterrupt' in p.stderr.read()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"orphan workers: {[w.pid for w in alive]}"


def test_label_writes_each_seeds_start_and_end_to_the_progress_file(tmp_path, monkeypatch):
    "What `spurnotes run` shows while a notebook trains: one line per seed started and finished, naming the label."
    from spurnotes.seeds import run_seeds, seeded_draw
    f = tmp_path/'progress.txt'
    monkeypatch.setenv('SPURNOTES_PROGRESS', str(f))
    assert run_seeds(seeded_draw, [0, 1, 2], jobs=2, label='ERM · toy') == run_seeds(seeded_draw, [0, 1, 2], jobs=1)   # unlabelled: no lines
    lines = f.read_text().splitlines()
    assert sum('ERM · toy · seed' in l and 'training' in l for l in lines) == 3, lines
    assert sum('done (' in l for l in lines) == 3 and any('done (3 of 3)' in l for l in lines), lines


def test_workers_print_no_torch_jit_notice(capfd):
    "Workers import fastai (through the function they run): torch's torch.jit deprecation notice must not reach the notebook's output."
    from spurnotes.seeds import run_seeds
    from seed_tasks import import_fastai_layers
    assert run_seeds(import_fastai_layers, [0, 1], jobs=2) == [0, 1]
    err = capfd.readouterr().err
    assert 'torch.jit.script' not in err, err
