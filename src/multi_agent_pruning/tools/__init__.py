"""Operational tools: pre-fetching pretrained weights for offline cluster workers."""

from multi_agent_pruning.tools.downloader import ModelDownloader

__all__ = ["ModelDownloader"]
