"""Counterfactual prompts for question-conditioned policies: each sample paired with another sample's question.

A policy that reads the object a question names must keep other tokens when it is given another question
of the same type; one that reads only the kind of question changes under a question of another type alone;
a question-blind policy cannot change (`benchmarks/policy_by_type.py --swap_questions`).
"""
from __future__ import annotations

import numpy as np


def question_partner(qtypes: list[str], questions: list[str], same_type: bool = True) -> np.ndarray:
  """For each sample, the index of the next sample (cyclically) whose question text differs, of the same
  question type when `same_type`, else of another type; its own index when the batch has none."""
  partner = np.arange(len(qtypes))
  for i, (qtype, question) in enumerate(zip(qtypes, questions)):
    for j in [(i + s) % len(qtypes) for s in range(1, len(qtypes))]:
      if (qtypes[j] == qtype) == same_type and questions[j] != question:
        partner[i] = j
        break
  return partner


def with_partner_questions(features: dict, partner: np.ndarray) -> dict:
  """Policy features with every question entry ("question", "question_mask") taken from the partner."""
  return {k: (v[partner] if k.startswith("question") else v) for k, v in features.items()}
