"""Attribute tables that personas are sampled from, with where each number comes from.

Each attribute is a tuple of labels and a probability per label (the share of *social media users*,
not of all adults). Where a share is published it is cited; where it is derived from published
figures the derivation is given; where it is our assumption it says so. Attributes are drawn
independently of each other except ``role``, which is drawn given ``activity`` (see
:data:`ROLE_GIVEN_ACTIVITY`). Real attributes correlate (age with education, leaning with topics);
independence is a simplification, so archetypes built from these tables are plausible mixes, not a
census.

Sources:

* [Pew21] Pew Research Center, "Social Media Use in 2021" (Auxier & Anderson, 7 April 2021):
  share of U.S. adults who use any social media: 72% overall; 84% of ages 18-29, 81% of 30-49,
  73% of 50-64, 45% of 65+; women use social media at higher rates than men.
* [Pew20] Pew Research Center, "70% of U.S. social media users never or rarely post or share about
  political, social issues" (short read, 4 May 2021; survey of 10,093 adults, 8-13 Sept 2020):
  never 40%, rarely 30%, often 9% (hence sometimes 21%).
* [Census] U.S. Census Bureau, 2020 Census / ACS 2021 1-year: adult population by age band
  (18-29 ~21%, 30-49 ~33%, 50-64 ~25%, 65+ ~21%), adult sex ratio (~51% women) and educational
  attainment of adults 25+ (high school or less ~37%, some college or associate ~26%, bachelor's or
  more ~38%).
* [Gallup21] Gallup, "U.S. Political Ideology Steady; Conservatives, Moderates Tie" (Jan 2022, 2021
  annual aggregate): conservative 36%, moderate 37%, liberal 25% (2% no opinion, dropped here).
* [Grinberg19] Grinberg et al., "Fake news on Twitter during the 2016 U.S. presidential election",
  Science 363 (2019): 0.1% of panel members shared 80% of the fake news sources ("supersharers").
"""

from __future__ import annotations

import itertools

__all__ = [
    "AGE",
    "GENDER",
    "LEANING",
    "EDUCATION",
    "ACTIVITY",
    "ROLES",
    "ROLE_GIVEN_ACTIVITY",
    "TOPICS",
    "TOPIC_WEIGHTS",
    "INTEREST_COUNT",
    "CATEGORICAL",
    "role_marginal",
    "interest_inclusion",
]


def _users_by(population: tuple[float, ...], use_rate: tuple[float, ...]) -> tuple[float, ...]:
    """Shares among users from population shares and per-group use rates (Bayes' rule)."""
    joint = [p * r for p, r in zip(population, use_rate)]
    total = sum(joint)
    return tuple(round(j / total, 4) for j in joint)


#: Age band of users: [Census] adult population by band times the [Pew21] use rate of each band
#: (84%, 81%, 73%, 45%), renormalised. Derived, not a published share.
AGE: tuple[tuple[str, ...], tuple[float, ...]] = (
    ("18-29", "30-49", "50-64", "65+"),
    _users_by((0.21, 0.33, 0.25, 0.21), (0.84, 0.81, 0.73, 0.45)),
)

#: Gender of users: ~51% of adults are women [Census] and [Pew21] reports a higher use rate among
#: women; 54% is our rounded approximation of that tilt (an assumption within a few points).
#: Other gender identities are not in the source tables and are left out, a known simplification.
GENDER: tuple[tuple[str, ...], tuple[float, ...]] = (("woman", "man"), (0.54, 0.46))

#: Political leaning: [Gallup21] shares of all adults, renormalised without "no opinion"; assumed the
#: same among users (an assumption: [Pew20] finds users at the ideological ends post more, not that
#: they use more).
LEANING: tuple[tuple[str, ...], tuple[float, ...]] = (
    ("liberal", "moderate", "conservative"),
    _users_by((0.25, 0.37, 0.36), (1.0, 1.0, 1.0)),
)

#: Education: [Census] attainment of adults 25+, tilted toward more education among users as
#: [Pew21] reports higher use with more education; the use rates (0.64, 0.78, 0.80) are our
#: approximation of that tilt, so these shares are an assumption anchored on published figures.
EDUCATION: tuple[tuple[str, ...], tuple[float, ...]] = (
    ("high school or less", "some college", "bachelor's or more"),
    _users_by((0.37, 0.26, 0.38), (0.64, 0.78, 0.80)),
)

#: How often users post or share about political and social issues: [Pew20], published shares.
ACTIVITY: tuple[tuple[str, ...], tuple[float, ...]] = (
    ("never", "rarely", "sometimes", "often"),
    (0.40, 0.30, 0.21, 0.09),
)

#: Roles in a misinformation cascade. No survey measures these directly: the table below is our
#: assumption, shaped by [Pew20] (most users rarely post) and [Grinberg19] (spreading is concentrated
#: in a small, very active minority).
ROLES: tuple[str, ...] = ("spreader", "commentator", "verifier", "bystander")

#: ``P(role | activity)``, one row per :data:`ACTIVITY` label, columns in :data:`ROLES` order (an
#: assumption, see :data:`ROLES`). Implied marginal: :func:`role_marginal`, about
#: spreader 6%, commentator 20%, verifier 7%, bystander 68%.
ROLE_GIVEN_ACTIVITY: tuple[tuple[float, ...], ...] = (
    (0.01, 0.02, 0.03, 0.94),  # never posts
    (0.04, 0.16, 0.08, 0.72),  # rarely
    (0.10, 0.45, 0.10, 0.35),  # sometimes
    (0.25, 0.50, 0.10, 0.15),  # often
)

#: Interest topics: the phrase that is embedded for each (one MiniLM call per topic, never per agent).
TOPICS: tuple[str, ...] = (
    "politics and elections",
    "health, medicine and vaccines",
    "science and technology",
    "business, the economy and personal finance",
    "sports",
    "entertainment, movies, music and celebrities",
    "climate, weather and the environment",
    "local news and the community",
    "crime and public safety",
    "religion and faith",
    "parenting and family life",
    "travel and food",
)

#: Relative popularity of each topic when a user's interests are drawn: an assumption (no single
#: published table covers these topics), ordered roughly like the news topics U.S. adults follow.
TOPIC_WEIGHTS: tuple[float, ...] = (0.14, 0.12, 0.10, 0.09, 0.10, 0.11, 0.06, 0.08, 0.06, 0.04, 0.05, 0.05)

#: How many interests a user has (1, 2 or 3): an assumption.
INTEREST_COUNT: tuple[tuple[int, ...], tuple[float, ...]] = ((1, 2, 3), (0.3, 0.4, 0.3))

#: The independently drawn categorical attributes, in the order personas store them.
CATEGORICAL: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "age": AGE,
    "gender": GENDER,
    "leaning": LEANING,
    "education": EDUCATION,
    "activity": ACTIVITY,
}


def role_marginal() -> tuple[float, ...]:
    """``P(role) = sum_a P(activity = a) P(role | a)``, in :data:`ROLES` order."""
    shares = ACTIVITY[1]
    return tuple(sum(shares[a] * ROLE_GIVEN_ACTIVITY[a][r] for a in range(len(shares))) for r in range(len(ROLES)))


def interest_inclusion() -> tuple[float, ...]:
    """Exact probability that each topic is among a user's interests, by enumeration.

    Interests are ``n ~`` :data:`INTEREST_COUNT` topics drawn one after another without replacement,
    each draw proportional to :data:`TOPIC_WEIGHTS` among the topics not yet drawn (the order in which
    the Gumbel top-k trick ranks them).
    """
    weights = TOPIC_WEIGHTS
    total = sum(weights)
    counts, count_probs = INTEREST_COUNT
    inclusion = [0.0] * len(weights)
    for ordered in itertools.permutations(range(len(weights)), max(counts)):
        prob, left = 1.0, total
        for depth, topic in enumerate(ordered):
            prob *= weights[topic] / left
            left -= weights[topic]
            # topics drawn at this depth are included when the user has more than `depth` interests
            included = sum(p for n, p in zip(counts, count_probs) if n > depth)
            inclusion[topic] += prob * included / _completions(len(weights), depth, max(counts))
    return tuple(inclusion)


def _completions(num_topics: int, depth: int, length: int) -> float:
    """How many ordered tails of ``length`` share a prefix of ``depth + 1`` (enumeration double counts)."""
    tails = 1
    for k in range(depth + 1, length):
        tails *= num_topics - k
    return float(tails)
