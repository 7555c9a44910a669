"""API reference, Performance Optimization / Parallel Processing: ``ModelDownloader``.

    python examples/28_model_downloader.py            # fetches the three models' weights
    python examples/28_model_downloader.py --small    # offline: checks the local cache only

Run it on a machine with internet access (a cluster head node) so that workers without internet
load the weights from the shared cache. Offline (``HF_HUB_OFFLINE=1``, or the Hub unreachable
within ``timeout`` seconds) every model is looked up in the local cache only; one failure never
stops the others, and each gets a status.
"""

from _small import pick  # noqa: F401  (small mode sets HF_HUB_OFFLINE=1)

from multi_agent_pruning.tools import ModelDownloader

# Enable parallel model downloading
downloader = ModelDownloader(num_workers=4)
results = downloader.download_models(
    ['deit_small', 'resnet50', 'convnext_tiny'],
    parallel=True
)

for name, outcome in results.items():
    print(f"{name}: {outcome['status']}" + (f" ({outcome['error']})" if outcome['error'] else ""))
