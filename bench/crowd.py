"""A believable crowd of delegates from the schools of the Liverpool City Region and its neighbours."""

from __future__ import annotations

import random
import re
import unicodedata
from typing import Any

GIVEN_NAMES = (
    "Siobhán", "Aoife", "Zoë", "Ngozi", "Oluwaseun", "Chidi", "Priya", "Aarav", "Fatima", "Yusuf",
    "Mei", "Thanh", "Grzegorz", "Agnieszka", "Eilidh", "Rhys", "Dafydd", "Seren", "Noémie", "José",
    "Björn", "Ayşe", "Kwame", "Amara", "Saoirse", "Tadhg", "Hannah", "Mohammed", "Jean-Luc", "Anne-Marie",
    "Liam", "Chloe", "Owen", "Imani", "Sinéad", "Darragh", "Ravi", "Leah", "Tomás", "Maryam",
)

SURNAMES = (
    "Ní Bhriain", "O'Neill", "Olubayo", "Ó Súilleabháin", "Nguyễn", "Okafor", "Patel", "Khan", "Kowalska",
    "Jones", "Williams", "Roberts", "McAllister", "Smith-Hughes", "Ahmed", "Chen", "Murphy", "Doherty",
    "Mensah", "Brennan", "Fitzgerald", "Hassan", "Wright", "Byrne", "Kelly", "Ó Briain", "Müller", "Lê",
)

SCHOOL_KINDS = (
    "Primary School", "Church of England Primary School", "Catholic High School", "Academy", "Nursery School",
    "Special School", "Sixth Form College", "Learning Centre",
)

PLACES = (
    "Birkenhead Park", "Bootle", "Crosby", "Everton", "Garston", "Halewood", "Huyton", "Kirkby", "Litherland",
    "Prescot", "Rainhill", "Runcorn", "Southport", "Speke", "Toxteth", "Wallasey", "Widnes", "Woolton",
    "Formby", "Eccleston",
)

ROLES = (
    "headteacher", "deputy headteacher", "assistant headteacher", "SENCO", "subject leader", "phase leader",
    "early years lead", "trust CEO", "governor", "teacher", "teacher educator",
)


def schools(count: int, rng: random.Random) -> list[str]:
    """`count` distinct school names, across every phase."""
    every = [f"{place} {kind}" for place in PLACES for kind in SCHOOL_KINDS]
    rng.shuffle(every)
    return every[:count]


def ascii_slug(text: str) -> str:
    """What a school's mail system makes of a name: no accents, no apostrophes, hyphens for spaces."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", folded.replace("'", "")).strip("-")


def delegates(count: int, tag: str, seed: int = 2027, school_count: int = 80) -> list[dict[str, Any]]:
    """`count` registration requests with distinct addresses; many share a school and a surname.

    `tag` goes into every address, so delegates of different runs never share a mailbox.
    """
    rng = random.Random(seed)
    pool = schools(min(school_count, len(PLACES) * len(SCHOOL_KINDS)), rng)
    crowd = []
    for index in range(count):
        school = rng.choice(pool)
        given, surname = rng.choice(GIVEN_NAMES), rng.choice(SURNAMES)
        crowd.append(
            {
                "name": f"{given} {surname}",
                "email": f"{ascii_slug(given)}.{ascii_slug(surname)}.{index}.{tag}@{ascii_slug(school)}.example",
                "organisation": school,
                "role": rng.choice(ROLES),
                "consent": True,
            }
        )
    return crowd
