"""The order-sensitivity task of the design notes: "Tom hit Jerry" vs "Jerry hit Tom" — who acted?

Every sentence names the same two people, Tom and Jerry, once each, so the
multiset of characters (and of words) is identical for both answers: a model
without positional information cannot beat 50 %. Templates mix active and
passive voice and add fillers so the answer is not "whoever comes first".
"""

from __future__ import annotations

import random

NAMES = ("Tom", "Jerry")
VERBS = ("hit", "chased", "pushed", "called", "helped", "thanked", "followed", "warned", "tickled", "surprised")
PLACES = ("kitchen", "garden", "hallway", "attic", "cellar", "park")
OPENERS = ("Yesterday", "This morning", "Suddenly", "Once again", "Late at night")
TEMPLATES = (
    "{agent} {verb} {patient}.",
    "{patient} was {verb} by {agent}.",
    "{opener}, {agent} {verb} {patient}.",
    "{opener}, {patient} was {verb} by {agent}.",
    "{agent} {verb} {patient} in the {place}.",
    "In the {place}, {patient} was {verb} by {agent}.",
)


def who_did_it_samples(count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` sentences with the index into ``NAMES`` of the agent, deterministic in ``seed``."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        agent = rng.randrange(2)
        text = rng.choice(TEMPLATES).format(
            agent=NAMES[agent],
            patient=NAMES[1 - agent],
            verb=rng.choice(VERBS),
            place=rng.choice(PLACES),
            opener=rng.choice(OPENERS),
        )
        samples.append((text, agent))
    return samples
