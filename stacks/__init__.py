"""Pulumi programs for imctl's cloud targets.

``stacks.config`` (typed config) and ``stacks.plan`` (offline plan under Pulumi's mock engine)
are importable without any provider SDK; the per-cloud packages import theirs on first use.
"""
