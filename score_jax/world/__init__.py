"""The generated world: procedural video question answering for the embedded video LLM.

`generator` draws cluttered 64x64 videos with small coloured shapes and a multiple-choice question
whose answer depends on one object (~1-2 visual-token cells per frame); `pseudo_video` draws
stage-1 still-scene slideshows; `sources` serves both through grain; `lossy_video` sends frames
through a real H.264 round trip; `oracle` turns the per-pixel `relevant` mask into per-token
relevance for an oracle baseline; `heldout_sets` names the held-out sets (clean, H.264, crowded);
`export` writes samples as mp4 files plus a JSONL dataset.
"""
