"""API reference, Performance Optimization / Caching Configuration: the on-disk profile cache.

    python examples/27_caching_configuration.py    # the same in both modes (loads configs only)

Model profiles (groups, MACs shares, sensitivity) are cached by content hash under
``precomputation.cache_dir``. Importance scores are not cached (they depend on the weights of each
pruned candidate), so ``precomputation.importance_scores`` is refused with that reason. A cached
profile expires after the shorter of ``precomputation.model_analysis.cache_duration`` and
``agents.profiling_agent.cache_duration``.
"""

from multi_agent_pruning.config import load_config_dict
from multi_agent_pruning.exceptions import ConfigurationError

# Configure intelligent caching (the reference's dict: importance_scores is refused)
config = {
    'precomputation': {
        'enabled': True,
        'cache_dir': './cache',
        'model_analysis': {
            'enabled': True,
            'cache_duration': 7200  # 2 hours
        },
        'importance_scores': {
            'enabled': True,
            'cache_duration': 3600  # 1 hour
        }
    }
}

try:
    load_config_dict(config)
except ConfigurationError as e:
    print(f"Configuration error: {e}")

# The project's way: the same without importance_scores. A profile lives as long as the shorter
# of model_analysis.cache_duration and agents.profiling_agent.cache_duration (3600 s by default).
del config['precomputation']['importance_scores']
config['agents'] = {'profiling_agent': {'cache_duration': 7200}}
cache = load_config_dict(config).profile_cache()
print(f"Profile cache: enabled={cache.enabled}, directory={cache.directory}, lifetime={cache.max_age_s:.0f} s")
