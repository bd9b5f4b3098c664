"""More ways to write the facts of a report (``variety=varied``): names, places, summaries, suspects.

``vary_facts`` rewrites some of the facts that ``generator._sample_facts`` drew, each with its own
probability, so that the classic styles and the new ones (``styles.py``) see them too:

- people: middle initials, an initial for the first name, hyphenated surnames, Jr./Sr./III;
  officers by rank and surname ("Sgt. Okafor") or rank and initial;
- locations: intersections, the corner of two streets, landmarks and parts of them ("the parking
  lot of Greenfield Mall"), highways with exits, directional streets, units and ZIP codes;
- summaries: a clause grammar (who did what to what, when, how it ended) per kind of crime, one
  or two sentences, instead of a rewording of the detail sentence;
- suspects: police shorthand ("W/M, 30-35, 5'10\", thin build, blk hoodie") beside prose;
- statuses: dispositions as officers write them.

All draws come from the ``random.Random`` passed in.
"""

from __future__ import annotations

import datetime as dt
import random
import re

from llmner.data.crime import generator as g
from llmner.data.crime.grammar import Grammar, text_of

# --- summaries: a clause grammar; {item} and {premise} are filled per report -----------------------
_ACTS: dict[str, tuple[str, ...]] = {
    "theft": ("took {item} from the {premise}", "concealed {item} in a bag and left without paying",
              "removed {item} from a display near the entrance", "walked out of the {premise} with {item}",
              "lifted {item} from a customer's coat"),
    "burglary": ("forced open the rear door and took {item}", "entered through an unlocked window and removed {item}",
                 "broke into the {premise} and stole {item}", "pried open a side door and ransacked the {premise}"),
    "robbery": ("demanded cash from the clerk while showing a knife", "threatened the victim with a handgun and took {item}",
                "grabbed {item} from the victim and ran", "pushed the victim to the ground and took {item}"),
    "assault": ("punched the victim several times during an argument", "struck the victim with a bottle",
                "attacked the victim outside the {premise}", "shoved the victim to the ground and kicked them"),
    "vandalism": ("spray-painted graffiti on the {premise}", "smashed the front windows of the {premise}",
                  "slashed the tires of a car parked by the {premise}", "damaged the doors and lights of the {premise}"),
    "fraud": ("used the victim's card details to make online purchases", "posed as a bank employee to obtain account details",
              "deposited a forged check in the victim's name", "opened credit accounts using the victim's identity"),
    "vehicle": ("took the victim's car from the {premise}", "broke a window and stole {item} from a parked car",
                "forced the driver out of the vehicle and drove away", "cut the catalytic converter from a van"),
    "arson": ("set fire to the {premise}", "poured accelerant near the rear door of the {premise} and lit it",
              "started a fire in a dumpster that spread to the {premise}"),
    "hit_and_run": ("struck a pedestrian and drove off", "hit a cyclist in the bike lane and did not stop",
                    "sideswiped a parked car and left the scene without leaving a note"),
    "drugs": ("had suspected narcotics and {item} in a backpack", "sold small bags of powder near the {premise}",
              "carried pills and cash in the glove box"),
    "trespass": ("entered the fenced {premise} after hours", "cut through the fence and hid inside the {premise}",
                 "refused to leave the {premise} after being warned"),
    "embezzlement": ("diverted company funds to a personal account", "falsified records to hide missing money",
                     "wrote company checks to themselves over several months"),
    "harassment": ("sent the victim repeated threatening messages", "followed the victim home on several occasions",
                   "demanded money in exchange for not publishing private photos"),
}
_ITEMS = ("cash", "a laptop", "jewelry", "two phones", "a handbag", "several clothing items", "a bicycle",
          "power tools", "a wallet", "electronics", "prescription medication", "a watch")

SUMMARY = Grammar({
    "summary": ("<subject> <act><when?><end>.", "<subject> <act><when?><end>. <after>",
                "<subject> <act><when?><end>. {Detail}", "{Detail} <subject> <act><end>.",
                "<victim_ref> reported that <subject_lc> <act><when?><end>.",
                "<passive><when?>.", "<passive><when?>. <after>", "<while>, <subject_lc> <act><end>."),
    "subject": ("An unknown suspect", "A male suspect", "A female suspect", "Two suspects", "The suspect",
                "An unidentified man", "A masked individual", "A former employee", "A customer",
                "An acquaintance of the victim", "A juvenile"),
    "subject_lc": ("an unknown suspect", "a man", "a woman", "two people", "the suspect", "someone",
                   "a former employee", "a person the victim knew"),
    "victim_ref": ("The victim", "The complainant", "The reporting party", "The owner", "The manager", "A resident"),
    "act": ("{act}",),
    "passive": ("The {premise} was targeted and {item} was taken", "{Item} was reported stolen from the {premise}",
                "Damage to the {premise} was reported", "A disturbance at the {premise} was reported",
                "Officers were called to the {premise} after the incident"),
    "when": (" overnight", " during business hours", " while the victim was at work", " late in the evening",
             " shortly after closing", " earlier that day", " over the weekend"),
    "while": ("While the victim was away", "During a busy shift", "Shortly after closing", "Late at night",
              "Earlier that day"),
    "end": ("", "", " and fled on foot", " before fleeing in a dark vehicle", " and left the area",
            ", then ran toward the nearby park"),
    "after": ("No injuries were reported.", "The victim was not hurt.", "The loss is estimated at {money}.",
              "The victim was treated at the scene for minor injuries.", "Nothing else was reported missing."),
})


_PROPERTY = {"theft", "burglary", "robbery", "vehicle"}
_NO_LOSS = SUMMARY.extend({  # no "was taken" where nothing is taken
    "passive": ("Damage to the {premise} was reported", "A disturbance at the {premise} was reported",
                "Officers were called to the {premise} after the incident"),
    "after": ("No injuries were reported.", "The victim was not hurt.",
              "The victim was treated at the scene for minor injuries."),
})


def crime_category(crime: str) -> str:
    """The ``generator._CRIMES`` key whose names include ``crime`` ("theft" if none does)."""
    return next((k for k, v in g._CRIMES.items() if crime in v[0]), "theft")


def summary(rng: random.Random, f: g._Facts) -> str:
    """A summary of one or two sentences from the clause grammar."""
    item = rng.choice(_ITEMS)
    slots = {"act": rng.choice(_ACTS[crime_category(f.crime_types[0])]), "item": item,
             "Item": item[0].upper() + item[1:], "premise": f.premise, "money": g._money(rng, "{money}"),
             "Detail": f"{f.detail[0].upper()}{f.detail[1:]}."}
    category = crime_category(f.crime_types[0])
    grammar = SUMMARY if category in _PROPERTY else _NO_LOSS
    pieces = grammar.expand(rng, "summary", slots)
    # the act is a slot value, not a template: its own {item} and {premise} are filled here
    return text_of(pieces).replace("{item}", item).replace("{premise}", f.premise)


# --- people ---------------------------------------------------------------------------------------
def person(rng: random.Random, name: str) -> str:
    """``name`` (First [M.] Last) in another common written form, now and then."""
    parts = name.split()
    first, last = parts[0], parts[-1]
    r = rng.random()
    if r < 0.08:
        return f"{first[0]}. {last}"
    if r < 0.14:
        return f"{first} {last}-{rng.choice(g._LAST).replace(chr(39), '')}"
    if r < 0.19:
        return f"{name} {rng.choice(('Jr.', 'Sr.', 'III', 'II'))}"
    if r < 0.27 and len(parts) == 2:
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
    return name


def officer(rng: random.Random, name: str) -> str:
    """An officer's name: rank and full name, rank and surname, rank and initial."""
    rank = next((r for r in sorted(g._RANKS, key=len, reverse=True) if r and name.startswith(r + " ")), "")
    rest = name[len(rank):].strip()
    if not rank or rng.random() < 0.3:
        rank = rng.choice(("Officer", "Ofc.", "Det.", "Sgt.", "Deputy", "Cpl.", "P.O.", "Inv.", "Det. Sgt.", "Sgt",
                           "Ofc", "Capt.", "Special Agent", "Deputy Sheriff", "Trooper First Class", "Investigator"))
    last = rest.split()[-1]
    r = rng.random()
    if r < 0.3:
        return f"{rank} {last}"
    if r < 0.45:
        return f"{rank} {rest.split()[0][0]}. {last}"
    return f"{rank} {rest}"


# --- places ---------------------------------------------------------------------------------------
_DIRS = ("N.", "S.", "E.", "W.", "North", "South", "East", "West")
_LANDMARK_PARTS = ("parking lot of", "rear entrance of", "loading dock behind", "lobby of", "east side of",
                   "bus shelter outside", "alley behind", "food court at")
_HIGHWAYS = ("Interstate 80", "I-95", "Route 9", "Highway 101", "State Route 17", "US-30")


def location(rng: random.Random, city: str) -> str:
    """A place written as officers and reporters write them (no leading preposition)."""
    street, other = g._street(rng), g._street(rng)
    r = rng.random()
    if r < 0.18:
        place = rng.choice((f"{street} and {other}", f"{street} & {other}", f"{street} at {other}",
                            f"the intersection of {street} and {other}", f"the corner of {street} and {other}"))
    elif r < 0.32:
        place = f"{rng.choice(_DIRS)} {rng.choice(g._STREETS)} {rng.choice(g._SUFFIXES)}"
        place = f"{rng.randint(100, 9999)} {place}" if rng.random() < 0.7 else f"the {rng.randint(1, 49)}00 block of {place}"
    elif r < 0.5:
        landmark = rng.choice(g._PLACES)
        landmark = landmark[4:] if landmark.startswith("the ") else landmark
        place = f"the {rng.choice(_LANDMARK_PARTS)} {landmark}"
    elif r < 0.58:
        place = f"{rng.choice(_HIGHWAYS)} {rng.choice(('northbound', 'southbound', 'eastbound', 'westbound'))}" \
                f" near Exit {rng.randint(2, 9)}"
    elif r < 0.7:
        place = f"{rng.randint(10, 9999)} {street}, {rng.choice(('Apt.', 'Unit', 'Suite', 'Room', '#'))} " \
                f"{rng.randint(1, 9)}{rng.choice(('', 'A', 'B', 'C', '0', '1'))}"
    else:
        return g._location(rng, city)
    if rng.random() < 0.4:
        state = rng.choice(g._STATES)
        place += rng.choice((f", {city}", f", {city}, {state}", f" in {city}"))
    return place


# --- suspects and statuses -----------------------------------------------------------------------
def terse_suspect(rng: random.Random) -> str:
    """A suspect in police shorthand, e.g. ``W/M, 30-35, 5'10", thin build, blk hoodie``."""
    sex = rng.choice(("W/M", "B/M", "H/M", "A/M", "W/F", "B/F", "H/F", "M", "F", "male", "female"))
    low = rng.randint(16, 50)
    parts = [sex, rng.choice((f"{low}-{low + 5}", f"approx {low}", f"{low}s" if low % 10 == 0 else f"{low}-{low + 10}",
                              f"{low // 10 * 10}s"))]
    parts += rng.sample([f"{rng.randint(5, 6)}'{rng.randint(0, 11)}\"", rng.choice(("thin", "med", "heavy", "stocky")) + " build",
                         rng.choice(("blk", "gry", "red", "navy", "wht")) + " " + rng.choice(("hoodie", "jacket", "cap", "T-shirt")),
                         rng.choice(("jeans", "dark pants", "shorts", "sweatpants")),
                         rng.choice(("beard", "glasses", "tattoo on neck", "backpack", "face mask"))], rng.randint(2, 4))
    return ", ".join(parts) if rng.random() < 0.7 else " ".join(parts)


STATUSES = ("Report taken", "Unfounded", "Forwarded to Investigations", "Closed - no further action",
            "Open - follow-up assigned", "Cleared - arrest", "Inactive pending leads", "Referred to CID",
            "Under investigation", "Suspect in custody", "Active")


# --- crime names, evidence, dates, times, e-mails ---------------------------------------------------
_MORE_NAMES: dict[str, tuple[str, ...]] = {
    "theft": ("Retail theft", "Theft - shoplifting", "Package theft", "Theft of bicycle", "Larceny from building"),
    "burglary": ("Burglary - residential", "Burglary (commercial)", "Breaking & entering", "Home invasion",
                 "Burglary of a habitation"),
    "robbery": ("Robbery (armed)", "Strong-arm robbery", "Robbery - business", "Attempted robbery"),
    "assault": ("Assault - 2nd degree", "Domestic assault", "Assault with a deadly weapon", "Felony assault"),
    "vandalism": ("Criminal damage to property", "Vandalism - graffiti", "Destruction of property"),
    "fraud": ("Identity fraud", "Bank fraud", "Forgery and fraud", "Elder financial abuse", "Phishing scam"),
    "vehicle": ("Theft from motor vehicle", "Stolen vehicle", "Grand theft auto", "Vehicle break-in"),
    "arson": ("Arson - structure fire", "Attempted arson", "Arson (vehicle)"),
    "hit_and_run": ("Hit and run - injury", "Hit and run (property damage)", "Failure to stop and render aid"),
    "drugs": ("Possession with intent to distribute", "Drug possession - felony", "Possession of drug paraphernalia"),
    "trespass": ("Trespass - warning issued", "Trespassing on posted property", "Criminal trespass (2nd degree)"),
    "embezzlement": ("Theft by employee", "Embezzlement of funds", "Fraudulent bookkeeping"),
    "harassment": ("Cyberstalking", "Harassment - phone", "Threats", "Aggravated harassment"),
}
_MORE_EVIDENCE = ("body-worn camera footage", "911 call recording", "receipt", "cell phone", "kitchen knife",
                  "hammer", "fingerprint lifts", "footwear impressions", "cigarette butt", "water bottle",
                  "ski mask", "broken padlock", "glass fragments", "paint chips", "USB drive", "hair sample",
                  "credit card statements", "written statement", "photos of the scene", "doorbell video",
                  "dash camera footage", "shell casings", "bloodstained towel", "torn receipt")


def date_form(rng: random.Random, date_text: str) -> str:
    """``date_text`` (one of ``generator._date``'s forms) re-drawn in another common form, now and then."""
    d = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(365 * 7))
    month, abbr = g._MONTHS[d.month - 1], g._MONTHS[d.month - 1][:3]
    return rng.choice((f"{abbr} {d.day} {d.year}", f"{d.day:02d}-{abbr}-{d.year}", f"{d.year}/{d.month:02d}/{d.day:02d}",
                       f"{month} {d.day}", f"{abbr.upper()} {d.day:02d}, {d.year}", f"{d.month}-{d.day}-{d.year}",
                       f"{g._WEEKDAYS[d.weekday()][:3]} {d.month}/{d.day}/{d.year}", date_text))


def time_form(rng: random.Random, time_text: str) -> str:
    """A time in another common form (24 h with 'hrs', 'approx.' inside, words for the day part), now and then."""
    h, m = rng.randrange(24), rng.choice((0, 10, 15, 20, 30, 40, 45, 50, rng.randrange(60)))
    part = "in the morning" if h < 12 else "in the afternoon" if h < 18 else "in the evening"
    return rng.choice((f"{h:02d}{m:02d}h", f"{h:02d}:{m:02d} hrs", f"{h % 12 or 12}:{m:02d} {part}",
                       f"{h % 12 or 12}:{m:02d}{'pm' if h >= 12 else 'am'}", f"{h:02d}.{m:02d}", time_text))


_HOSTS = ("mail.com", "comcast.net", "protonmail.com", "gmx.com", "live.com", "msn.com", "ymail.com")


def email_form(rng: random.Random, name: str) -> str:
    """A personal e-mail address for ``name`` (more hosts and shapes than the classic one)."""
    parts = [re.sub(r"[^a-z]", "", w.lower()) for w in name.replace(",", " ").split()]
    parts = [p for p in parts if len(p) > 1] or ["user"]
    first, last = parts[0], parts[-1]
    user = rng.choice((f"{first}{last[0]}", f"{first[0]}.{last}", f"{last}{rng.randint(60, 99)}", f"{first}-{last}",
                       f"{first}.{last}{rng.randint(1, 9)}"))
    return f"{user}@{rng.choice(_HOSTS + g._MAIL_HOSTS)}"


# --- all of it ------------------------------------------------------------------------------------
def vary_facts(rng: random.Random, f: g._Facts) -> g._Facts:
    """``f`` with some facts rewritten in the forms above (in place; returned for chaining)."""
    for v in f.victims:
        if not v.is_business:
            v.name = person(rng, v.name)
        for role in ("owner", "manager", "ceo"):
            if getattr(v, role) and rng.random() < 0.5:
                setattr(v, role, person(rng, getattr(v, role)))
    f.witnesses = [person(rng, w) for w in f.witnesses]
    if f.officer and rng.random() < 0.6:
        f.officer = officer(rng, f.officer)
    if f.location and rng.random() < 0.6:
        f.location = location(rng, f.city)
    if f.summary and rng.random() < 0.7:
        f.summary = summary(rng, f)
    category = crime_category(f.crime_types[0])
    if rng.random() < 0.35:
        f.crime_types[0] = rng.choice(_MORE_NAMES[category])
    if f.evidence and rng.random() < 0.5:
        pool = sorted(set(_MORE_EVIDENCE) - set(f.evidence))
        f.evidence[rng.randrange(len(f.evidence))] = rng.choice(pool)
    if f.date and rng.random() < 0.25:
        f.date = date_form(rng, f.date)
    if f.time and rng.random() < 0.25:
        f.time = time_form(rng, f.time)
    for v in f.victims:
        if v.email and not v.is_business and rng.random() < 0.5:
            v.email = email_form(rng, v.name)
    f.suspects = [(terse_suspect(rng), False) if not plural and rng.random() < 0.25 else (d, plural)
                  for d, plural in f.suspects]
    if f.status and rng.random() < 0.3:
        f.status = rng.choice(STATUSES)
    if f.status and rng.random() < 0.15:
        f.status = f.status.title() if rng.random() < 0.7 else f.status.upper()
    return f
