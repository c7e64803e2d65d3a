"""File-tree helpers for tests that assert nothing was lost or changed."""
from __future__ import annotations

import hashlib
import os


def tree_digest(folder) -> dict:
  """{relative path: sha256} of every file under `folder`."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out
