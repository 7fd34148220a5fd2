"""``python -m tests.surface``: rewrite the public-surface snapshots."""

from tests.surface import write_all

write_all()
