"""API reference, TimingProfiler: time code blocks and print the bottlenecks.

    python examples/11_timing_profiler.py            # times loading DeiT-Small (downloads once)
    python examples/11_timing_profiler.py --small    # times building timm's tiny test_vit

``get_summary()`` prints the table and also returns it (one ``TimerStats`` per timer).
"""

from _small import pick

import time

import timm

from multi_agent_pruning.utils import TimingProfiler

TIMM_NAME, PRETRAINED = pick(('deit_small_patch16_224', True), ('test_vit', False))
TRAINING_SECONDS = pick(1.0, 0.1)

profiler = TimingProfiler()

with profiler.timer("operation_name"):
    # Your code here
    pass

with profiler.timer("model_loading"):
    model = timm.create_model(TIMM_NAME, pretrained=PRETRAINED)

profiler.start_timer("training")
# ... training code ...
time.sleep(TRAINING_SECONDS)
elapsed = profiler.end_timer("training")
print(f"training took {elapsed:.2f} s")

stats = profiler.get_summary()  # Print timing summary
print(f"Timers: {[s.name for s in stats]}")
