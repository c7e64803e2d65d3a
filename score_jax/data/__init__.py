"""The embedded default world: procedural video question answering for the built-in video LLM.

`world` draws cluttered 64x64 videos with small coloured shapes and a multiple-choice question
whose answer depends on one object (~1-2 visual-token cells per frame); `pseudo_video` draws
stage-1 still-scene slideshows; `pipeline` serves both through grain; `oracle` turns the
per-pixel `relevant` mask into per-token relevance for an oracle baseline.
"""
