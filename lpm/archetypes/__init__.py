"""Archetypes and LLM decisions: personas -> K archetypes -> one decision per (archetype, context).

Personas are sampled from published marginals (:mod:`.marginals`, :mod:`.personas`) and grouped by
k-means (:mod:`.clustering`). A backend answers once per (archetype, context) (:mod:`.backends`,
:mod:`.embedding_backend`), behind a disk cache (:mod:`.cache`); the answers become tensors the
step gathers by archetype (:mod:`.tables`). No LLM is called inside a step.

Importing this package needs neither ``openai``, ``transformers`` nor ``sentence-transformers``:
each is imported by the backend that uses it, when it is constructed.
"""

from lpm.archetypes.backends import OpenAICompatibleBackend, TransformersBackend, check_requests, make_backend
from lpm.archetypes.cache import DecisionCache, cache_key
from lpm.archetypes.cached_backend import CachedBackend
from lpm.archetypes.clustering import DEFAULT_WEIGHTS, Archetypes, KMeansResult, build_archetypes, kmeans, persona_features
from lpm.archetypes.decision import EMOTIONS, PROMPT_VERSION, Backend, Decision, Usage, decision_schema, parse_decision
from lpm.archetypes.embedding_backend import ANCHORS, EmbeddingBackend
from lpm.archetypes.personas import VOCABULARY, Personas
from lpm.archetypes.population import OpinionTopic, PersonaPriors, persona_state
from lpm.archetypes.tables import (ArchetypeDrive, ArchetypeScaled, ArchetypeSetup, BehaviourHead, DecisionTable,
                                  ExposureDrive)

__all__ = [
    # personas and archetypes
    "Personas",
    "VOCABULARY",
    "Archetypes",
    "build_archetypes",
    "kmeans",
    "KMeansResult",
    "persona_features",
    "DEFAULT_WEIGHTS",
    "OpinionTopic",
    "PersonaPriors",
    "persona_state",
    # decisions and backends
    "Decision",
    "Usage",
    "Backend",
    "EMOTIONS",
    "PROMPT_VERSION",
    "parse_decision",
    "decision_schema",
    "EmbeddingBackend",
    "ANCHORS",
    "OpenAICompatibleBackend",
    "TransformersBackend",
    "make_backend",
    "check_requests",
    "DecisionCache",
    "CachedBackend",
    "cache_key",
    # tables and dynamics
    "DecisionTable",
    "BehaviourHead",
    "ArchetypeDrive",
    "ExposureDrive",
    "ArchetypeScaled",
    "ArchetypeSetup",
]
