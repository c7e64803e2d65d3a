"""Finding video files whatever the case of their extension.

An annotation naming `abc.mp4` may sit next to `abc.MP4` on disk (some Video-MME downloads); lmms-eval
tries .mp4, .MP4 and .mkv (`videomme_doc_to_visual` in lmms_eval/tasks/videomme/utils.py) and the
suffix as given, upper- and lower-case (`get_video` in lmms_eval/tasks/_task_utils/video_loader.py),
@75571cfe. Here every video extension matches in any case, wherever a video file is looked up (the
benchmark converters and the JSONL reader).
"""
from __future__ import annotations

import os

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


def is_video_name(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def find_video(folder: str, stem_or_name: str) -> str:
  """The existing video file `folder/stem_or_name`, matching its extension case-insensitively.

  A name with a video extension (`abc.mp4`) is looked for as given, then as `abc` with that extension
  in any case, then with the other video extensions; a bare stem (`abc`) with every extension. When
  nothing exists, the name as given (a stem gets `.mp4`): the caller reports it as missing.
  """
  path = os.path.join(folder, stem_or_name)
  named = is_video_name(stem_or_name)
  if named and os.path.isfile(path):
    return path
  stem, ext = os.path.splitext(path) if named else (path, "")
  order = ([ext.lower()] if named else []) + [e for e in VIDEO_EXTENSIONS if e != ext.lower()]
  for e in order:
    for candidate in (stem + e, stem + e.upper()):
      if os.path.isfile(candidate):
        return candidate
  parent, base = os.path.split(stem)
  try:  # mixed case (".Mp4"): one listing of the folder
    names = os.listdir(parent or ".")
  except OSError:
    names = []
  found = sorted((n for n in names if os.path.splitext(n)[0] == base and is_video_name(n)),
                 key=lambda n: (order.index(os.path.splitext(n)[1].lower()), n))
  if found:
    return os.path.join(parent, found[0])
  return path if named else path + ".mp4"


def existing_video(path: str) -> str:
  """`path` if it exists, else the same video with its extension in another case (or another video
  extension) when one exists, else `path`."""
  if os.path.isfile(path) or not is_video_name(path):
    return path
  found = find_video(*os.path.split(path))
  return found if os.path.isfile(found) else path
