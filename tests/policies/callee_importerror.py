"""Test policy whose import fails."""
raise RuntimeError('broken policy module')
