"""Seeded synthetic crime reports with character spans for the 17 entity types.

A report is first sampled as facts (crime, date, place, officer, victims, evidence, ...) and then
written in one of three styles: labelled fields (``**Crime Type:** Theft``, in a varied order with
varied labels), a free narrative paragraph, or a few header fields followed by a narrative.
Text is assembled from pieces that are either plain strings or ``(text, label)`` entities, so the
spans are exact by construction.

The generator keeps two promises the importer relies on for an exact round trip (see
``importer.py``): the same ``(label, text)`` never occurs twice as an entity in one report, and the
first mention of each entity is the one that is tagged. Plain text therefore avoids numbers that
could collide with ages (2 digits) or badges (4-5 digits); case numbers have 6 digits.

All randomness comes from the ``random.Random`` passed in; there is no global state.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field

from llmner.data.schema import Span

Piece = str | tuple[str, str]  # plain text, or (text, entity label)


@dataclass
class Report:
    """A crime report and its labelled character spans (sorted by start)."""

    text: str
    spans: list[Span] = field(default_factory=list)


def generate_reports(n: int, seed: int = 0) -> list[Report]:
    """``n`` synthetic reports; the same ``(n, seed)`` always gives the same reports."""
    rng = random.Random(seed)
    return [generate_report(rng) for _ in range(n)]


def generate_report(rng: random.Random) -> Report:
    """One synthetic report drawn from ``rng``."""
    facts = _sample_facts(rng)
    style = rng.choices(("fields", "narrative", "hybrid"), weights=(45, 40, 15))[0]
    if style == "fields":
        pieces = _fields_report(rng, facts)
    elif style == "narrative":
        pieces = _narrative_report(rng, facts)
    else:
        pieces = _hybrid_report(rng, facts)
    return _assemble(pieces)


# ----------------------------------------------------------------------------------------------
# Vocabulary

_FIRST = (
    "John Mary James Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara Richard "
    "Susan Joseph Jessica Thomas Sarah Carlos Maria Luis Ana Jose Sofia Wei Mei Hiroshi Yuki Ahmed "
    "Fatima Omar Aisha Raj Priya Arjun Ananya Kwame Amara Chidi Ngozi Ivan Olga Dmitri Elena Pierre "
    "Claire Lukas Hannah Mateo Lucia Sean Aoife Tyrone Keisha Daniel Grace Noah Emma Ethan Olivia "
    "Liam Ava Samuel Chloe Marcus Nadia Victor Irene Hector Rosa Tomasz Agnieszka Kenji Leila"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Chen Wang Kim Patel "
    "Singh Khan Okafor Mensah Kowalski Novak Ivanova Petrov Dubois Moreau Schmidt Fischer Rossi "
    "Bianchi Sato Tanaka Yamamoto O'Brien Murphy Kelly Sullivan McCarthy Fitzgerald Ortiz Castillo "
    "Reyes Morales Haddad Farouk Mendoza Herrera Jensen Larsen Cohen Levy Abernathy Whitfield"
).split()
_STREETS = (
    "Oak Maple Pine Cedar Elm Main Washington Lincoln Lake Hill Park River Sunset Highland Church "
    "Mill Spring Chestnut Walnut Willow Birch Jefferson Madison Franklin Harbor Bay Grove Meadow "
    "Forest Union Market Broad Center Railroad Orchard Valley Ridge Prospect Bridge Front Water "
    "1st 2nd 3rd 4th 5th 6th 7th 8th 9th 10th 12th 14th"
).split()
_SUFFIXES = (
    "Street|St.|Avenue|Ave.|Road|Rd.|Boulevard|Blvd.|Lane|Ln.|Drive|Dr.|Court|Way|Place|Terrace|"
    "Parkway|Circle|Highway"
).split("|")
_CITIES = (
    "Springfield|Riverton|Lakeside|Fairview|Brookfield|Greenville|Oakdale|Millbrook|Cedar Falls|"
    "Ashford|Bridgeport|Kingston|Westfield|Clayton|Georgetown|Salem|Dover|Hudson|Marion|Newport|"
    "Auburn|Arlington|Clinton|Port Royal|East Haven|North Ridge|Silver Lake|Bayview"
).split("|")
_STATES = "IL OH PA NY CA TX WA OR MI GA NC VA MA CO AZ".split()
_PLACES = (
    "Riverside Park|Greenfield Mall|Central Station|Lincoln High School|Harbor View Marina|"
    "Westgate Shopping Center|Memorial Hospital|City Hall Plaza|Oakwood Apartments|Pine Ridge Motel|"
    "the Eastside Community Center|the Northgate Library|Sunnybrook Elementary School|Union Square|"
    "Maple Grove Cemetery|the Civic Arena parking garage"
).split("|")
_BIZ_KINDS = (
    "Boutique|Hardware|Bakery|Cafe|Pharmacy|Jewelers|Electronics|Auto Repair|Deli|Books|Florist|"
    "Market|Liquor Store|Gas Station|Dental Clinic|Fitness Center|Pawn Shop|Salon|Pizzeria|Bistro|"
    "Grocery|Laundromat|Art Gallery|Pet Supply|Furniture"
).split("|")
_BIZ_WORDS = (
    "Golden Blue Silver Red Green Sunrise Evergreen Summit Harbor Liberty Pioneer Crescent Northstar "
    "Lighthouse Maplewood Riverbend Copper Ironwood Keystone Brightside Horizon Bluebird"
).split()
_CORP_WORDS = "Technologies|Holdings|Logistics|Systems|Solutions|Industries|Partners|Labs|Group".split("|")
_CORP_SUFFIXES = ("Inc.", "LLC", "Corp.", "Ltd.", "Co.", "")
_MAIL_HOSTS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "aol.com")

_RANKS = (
    "Officer", "Officer", "Officer", "Ofc.", "Sergeant", "Sgt.", "Detective", "Det.", "Deputy",
    "Lieutenant", "Lt.", "Corporal", "Cpl.", "Trooper", "Patrol Officer", "Constable", "",
)

# category: (crime names, premises, detail clauses, evidence items, victim is a business: probability)
_CRIMES: dict[str, tuple[list[str], list[str], list[str], list[str], float]] = {
    "theft": (
        ["Theft", "Larceny", "Petty theft", "Grand theft", "Shoplifting", "Pickpocketing"],
        ["store", "shop", "market", "department store", "boutique"],
        ["several high-end clothing items were reported missing",
         "merchandise worth {money} was taken from the display shelves",
         "a purse was taken from an unattended shopping cart",
         "cash was removed from the register while the clerk was distracted",
         "two bicycles were taken from the rack outside",
         "jewelry worth {money} disappeared from a display case",
         "a wallet was lifted from a customer's coat pocket"],
        ["security footage", "clothing tags", "shopping bag", "register receipts", "surveillance stills",
         "fingerprints", "anti-theft sensor", "price tags", "empty jewelry box"],
        0.6,
    ),
    "burglary": (
        ["Burglary", "Residential burglary", "Commercial burglary", "Break-in", "Breaking and entering"],
        ["residence", "home", "apartment", "office", "warehouse", "garage"],
        ["entry was gained through a rear window",
         "a laptop, a television and {money} in cash were taken",
         "the back door had been pried and several rooms ransacked",
         "the occupants returned home to find drawers emptied onto the floor",
         "tools valued at {money} were removed overnight",
         "a safe was removed from the back office"],
        ["pry marks", "broken window glass", "shoe prints", "crowbar", "latent fingerprints",
         "doorbell camera footage", "damaged door lock", "screwdriver", "glove"],
        0.35,
    ),
    "robbery": (
        ["Robbery", "Armed robbery", "Mugging", "Street robbery", "Bank robbery"],
        ["convenience store", "bank branch", "bus stop", "parking lot", "gas station"],
        ["the clerk was threatened and handed over {money}",
         "the victim was pushed to the ground and a phone was taken",
         "a handgun was displayed and the cash drawer emptied",
         "a note demanding money was passed to the teller",
         "a bag containing {money} was grabbed from the victim"],
        ["surveillance video", "demand note", "shell casing", "dropped baseball cap", "dye pack",
         "CCTV footage", "getaway vehicle description", "DNA swabs"],
        0.45,
    ),
    "assault": (
        ["Assault", "Aggravated assault", "Battery", "Simple assault", "Assault and battery"],
        ["bar", "sidewalk", "apartment complex", "nightclub", "restaurant"],
        ["a verbal argument escalated into a physical fight",
         "the victim was struck in the face and suffered a cut lip",
         "a glass bottle was swung at the victim during a dispute",
         "the victim was punched several times after a disagreement over a parking space",
         "the victim required treatment for bruising to the arms"],
        ["bloodied shirt", "broken bottle", "medical report", "photographs of injuries", "bar tab",
         "cell phone video", "blood samples", "torn jacket"],
        0.2,
    ),
    "vandalism": (
        ["Vandalism", "Criminal mischief", "Graffiti", "Property damage", "Malicious damage"],
        ["storefront", "school", "park", "church", "parked car"],
        ["graffiti was sprayed across the front wall",
         "the front windows were smashed with a rock",
         "four tires were slashed overnight",
         "a statue was knocked over and painted",
         "damage to the property is estimated at {money}"],
        ["spray paint can", "paint samples", "large rock", "broken glass", "pocket knife",
         "photographs of the damage", "stencil", "footprints"],
        0.5,
    ),
    "fraud": (
        ["Fraud", "Credit card fraud", "Identity theft", "Wire fraud", "Check fraud", "Online scam"],
        ["bank", "online store", "accounting office", "residence", "credit union"],
        ["unauthorized charges totaling {money} appeared on a statement",
         "a caller posing as a bank employee obtained account details",
         "a forged check for {money} was deposited",
         "a loan was opened using stolen personal information",
         "an invoice was paid to a fake vendor account"],
        ["bank statements", "phishing email", "copy of the forged check", "transaction logs", "phone records",
         "copies of invoices", "IP address logs", "account opening forms"],
        0.5,
    ),
    "vehicle": (
        ["Vehicle theft", "Auto theft", "Carjacking", "Theft from vehicle", "Motor vehicle theft"],
        ["parking lot", "driveway", "parking garage", "gas station", "dealership lot"],
        ["a gray sedan was taken while the engine was running",
         "the rear window was smashed and a backpack was taken from the seat",
         "the driver was ordered out of the car at a red light",
         "a pickup truck parked overnight was gone in the morning",
         "catalytic converters were cut from two vans"],
        ["tire tracks", "broken side mirror", "ignition parts", "dashcam video", "license plate reader hits",
         "fingerprints from the door handle", "abandoned tools", "key fob"],
        0.25,
    ),
    "arson": (
        ["Arson", "Suspected arson", "Arson of a structure"],
        ["warehouse", "vacant building", "restaurant", "garage", "storage unit"],
        ["a fire broke out in the rear storage area after hours",
         "flames were seen coming from a dumpster beside the building",
         "investigators found signs the fire was set deliberately",
         "the fire caused damage estimated at {money}"],
        ["gas can", "accelerant samples", "burnt rags", "lighter", "fire department report",
         "melted plastic container", "matchbook"],
        0.7,
    ),
    "hit_and_run": (
        ["Hit and run", "Hit-and-run", "Leaving the scene of an accident"],
        ["intersection", "crosswalk", "parking lot", "bike lane"],
        ["a cyclist was struck and the driver did not stop",
         "a parked car was sideswiped and the other driver drove off",
         "a pedestrian was clipped by a vehicle that sped away",
         "the victim's car was rear-ended and the other car fled the scene"],
        ["paint transfer", "headlight fragments", "skid marks", "dashcam video", "bumper piece",
         "traffic camera footage", "damaged bicycle"],
        0.1,
    ),
    "drugs": (
        ["Drug possession", "Narcotics possession", "Drug trafficking", "Possession of a controlled substance"],
        ["motel room", "parking lot", "apartment", "park", "vehicle"],
        ["a routine stop led to the discovery of suspected narcotics",
         "a tip about repeated short visits led officers to the unit",
         "pills were found in an unlabeled container",
         "a large amount of cash was found alongside small bags of powder"],
        ["digital scale", "plastic baggies", "white powder", "unlabeled pill bottle", "burner phone",
         "ledger", "cash bundle"],
        0.15,
    ),
    "trespass": (
        ["Trespassing", "Criminal trespass", "Unlawful entry"],
        ["construction site", "school grounds", "warehouse yard", "private property", "rail yard"],
        ["a person was found inside the fenced yard after hours",
         "a cut in the fence was discovered during a patrol",
         "the alarm was triggered and a person was seen near the loading dock",
         "an individual had been warned twice before to stay away"],
        ["bolt cutters", "cut fence section", "motion sensor logs", "flashlight", "trail camera photos",
         "backpack"],
        0.6,
    ),
    "embezzlement": (
        ["Embezzlement", "Employee theft", "Forgery", "Misappropriation of funds"],
        ["company", "firm", "office", "nonprofit", "restaurant"],
        ["funds totaling {money} were diverted over several months",
         "an employee falsified time sheets",
         "company checks were signed without authorization",
         "inventory records did not match the stock on hand"],
        ["payroll records", "audit report", "altered receipts", "bank transfer records",
         "email correspondence", "company laptop", "signed checks"],
        0.9,
    ),
    "harassment": (
        ["Harassment", "Stalking", "Extortion", "Criminal threatening", "Intimidation"],
        ["residence", "workplace", "apartment", "school", "business"],
        ["the victim received repeated threatening messages",
         "a former partner kept appearing outside the victim's home",
         "a caller demanded {money} to keep information private",
         "notes were left on the victim's car over two weeks"],
        ["text messages", "voicemail recordings", "screenshots", "handwritten notes", "call logs",
         "social media posts"],
        0.25,
    ),
}

_STATUS_ADJ = (
    "open", "closed", "under investigation", "pending", "active", "unsolved", "inactive",
    "pending further investigation", "under review", "ongoing",
)
_STATUS_NOUN = (
    "Suspect arrested", "Cleared by arrest", "Referred to detectives", "Awaiting forensic results",
    "Case closed", "Arrest made", "Referred to the District Attorney", "Suspended - no leads",
    "Open - pending witness interviews", "Warrant issued", "Closed - exceptionally cleared",
)
_NOT_GIVEN = ("Not provided", "N/A", "Unknown", "None", "None reported", "Not available", "-")

_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_ABBR = "Jan. Feb. Mar. Apr. May Jun. Jul. Aug. Sept. Oct. Nov. Dec.".split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


# ----------------------------------------------------------------------------------------------
# Facts


@dataclass
class _Victim:
    name: str
    is_business: bool
    age: int | None = None  # the person's age, or the owner's for a business
    owner: str | None = None
    manager: str | None = None
    ceo: str | None = None
    email: str | None = None


@dataclass
class _Facts:
    crime_types: list[str]
    premise: str
    detail: str
    summary: str | None
    date: str | None
    time: str | None
    location: str | None
    officer: str | None
    badge: str | None
    victims: list[_Victim]
    evidence: list[str]
    witnesses: list[str]
    suspects: list[tuple[str, bool]]  # (description, plural)
    status: str | None
    city: str
    case_number: str


class _People:
    """Draws distinct person names for one report."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def draw(self) -> str:
        while True:
            first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
            if self.rng.random() < 0.12:
                name = f"{first} {self.rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
            else:
                name = f"{first} {last}"
            if name not in self.used:
                self.used.add(name)
                return name


def _sample_facts(rng: random.Random) -> _Facts:
    category = rng.choice(list(_CRIMES))
    names, premises, details, evidence_pool, p_business = _CRIMES[category]
    people = _People(rng)
    crime_types = [rng.choice(names)]
    if rng.random() < 0.08:
        extra = rng.choice(("Vandalism", "Trespassing", "Assault", "Resisting arrest", "Criminal mischief"))
        if extra not in crime_types:
            crime_types.append(extra)
    city = rng.choice(_CITIES)
    detail = _money(rng, rng.choice(details))
    victims = [_victim(rng, people, rng.random() < p_business)]
    if rng.random() < 0.15:
        second = _victim(rng, people, False)
        if second.age is not None and second.age == victims[0].age:
            second.age += 1
        victims.append(second)
    generic = ["witness statements", "photographs of the scene", "CCTV footage", "DNA swabs", "fingerprints"]
    pool = sorted(set(evidence_pool) | set(rng.sample(generic, 2)))
    evidence = rng.sample(pool, rng.choice((0, 1, 2, 2, 3, 3, 3, 4, 5))) if rng.random() < 0.9 else []
    n_witnesses = rng.choices((0, 1, 2, 3), weights=(30, 35, 25, 10))[0]
    n_suspects = rng.choices((0, 1, 2), weights=(25, 65, 10))[0]
    return _Facts(
        crime_types=crime_types,
        premise=rng.choice(premises),
        detail=detail,
        summary=_summary(rng, crime_types[0], rng.choice(premises), detail) if rng.random() < 0.85 else None,
        date=_date(rng) if rng.random() < 0.95 else None,
        time=_time(rng) if rng.random() < 0.85 else None,
        location=_location(rng, city) if rng.random() < 0.95 else None,
        officer=_officer(rng, people) if rng.random() < 0.9 else None,
        badge=_badge(rng) if rng.random() < 0.8 else None,
        victims=victims,
        evidence=evidence,
        witnesses=[people.draw() for _ in range(n_witnesses)],
        suspects=list(dict.fromkeys(_suspect(rng) for _ in range(n_suspects))),  # distinct
        status=(rng.choice(_STATUS_ADJ) if rng.random() < 0.6 else rng.choice(_STATUS_NOUN))
        if rng.random() < 0.85 else None,
        city=city,
        case_number=f"{rng.choice(('CR-', 'INC-', '#', 'No. ', 'PD'))}{rng.randint(100000, 9999999)}",
    )


def _money(rng: random.Random, text: str) -> str:
    # Amounts are "$d,ddd" or "$ddd": never a lone 2-digit or 4-5 digit number (ages, badges).
    amount = f"${rng.randint(1, 9)},{rng.randint(0, 999):03d}" if rng.random() < 0.6 else f"${rng.randint(100, 999)}"
    return text.replace("{money}", amount)


def _date(rng: random.Random) -> str:
    d = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(365 * 7))
    month, day = _MONTHS[d.month - 1], d.day
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    forms = (
        f"{month} {day}, {d.year}",
        f"{month} {day}, {d.year}",
        f"{day} {month} {d.year}",
        d.isoformat(),
        f"{d.month:02d}/{day:02d}/{d.year}",
        f"{d.month}/{day}/{d.year % 100:02d}",
        f"{day:02d}.{d.month:02d}.{d.year}",
        f"{_WEEKDAYS[d.weekday()]}, {month} {day}, {d.year}",
        f"{_MONTH_ABBR[d.month - 1]} {day}, {d.year}",
        f"{month} {day}{suffix}, {d.year}",
        f"{day}{suffix} of {month} {d.year}",
        f"{_WEEKDAYS[d.weekday()]} {day} {month} {d.year}",
    )
    return rng.choice(forms)


def _time(rng: random.Random) -> str:
    h, m = rng.randrange(24), rng.choice((0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, rng.randrange(60)))
    h12 = h % 12 or 12
    ampm = "AM" if h < 12 else "PM"
    ampm = rng.choice((ampm, ampm.lower(), f"{ampm[0].lower()}.m."))
    forms = [
        f"{h:02d}:{m:02d}",
        f"{h:02d}:{m:02d}",
        f"{h:02d}{m:02d} hours",
        f"{h:02d}{m:02d} hrs",
        f"{h12}:{m:02d} {ampm}",
        f"{h12}:{m:02d} {ampm}",
        f"{h12}:{m:02d}{ampm}",
    ]
    if m == 0:
        forms.append(f"{h12} {ampm}")
    return rng.choice(forms)


def _street(rng: random.Random) -> str:
    return f"{rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}"


def _location(rng: random.Random, city: str) -> str:
    number = rng.choice((rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 9999)))
    state = f", {rng.choice(_STATES)}" if rng.random() < 0.25 else ""
    kind = rng.random()
    if kind < 0.5:
        place = f"{number} {_street(rng)}"
        if rng.random() < 0.15:
            unit = rng.choice(("Apt", "Apt.", "Unit", "Suite"))
            place += f", {unit} {rng.randint(1, 40)}{rng.choice(('', 'A', 'B', 'C'))}"
    elif kind < 0.62:
        place = f"{rng.choice(_STREETS)} Street and {_street(rng)}"
    elif kind < 0.72:
        place = f"{rng.randint(1, 49)}00 block of {_street(rng)}"
    else:
        place = rng.choice(_PLACES)
        if rng.random() < 0.3:
            place += f", {rng.randint(10, 999)} {_street(rng)}"
    if rng.random() < 0.6:
        place += f", {city}{state}"
    return place


def _officer(rng: random.Random, people: _People) -> str:
    rank = rng.choice(_RANKS)
    return f"{rank} {people.draw()}" if rank else people.draw()


def _badge(rng: random.Random) -> str:
    number = rng.choice((rng.randint(1000, 1899), rng.randint(2100, 9999), rng.randint(10000, 99999)))
    return rng.choice(("", "", "", "", "", "P", "K-", "SPD-", "B")) + str(number)


def _email_for(rng: random.Random, name: str) -> str:
    parts = [re.sub(r"[^a-z]", "", w.lower()) for w in name.split() if len(w) > 2 or not w.endswith(".")]
    first, last = parts[0], parts[-1]
    user = rng.choice((f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}", f"{last}.{first}",
                       f"{first}{last}{rng.randint(1, 99)}"))
    return f"{user}@{rng.choice(_MAIL_HOSTS)}"


def _business(rng: random.Random, people: _People) -> tuple[str, bool]:
    """A business name and whether it is a corporation (which has a CEO)."""
    kind = rng.random()
    if kind < 0.25:
        return f"{rng.choice(_LAST)}'s {rng.choice(_BIZ_KINDS)}", False
    if kind < 0.45:
        return f"{rng.choice(_STREETS)} Street {rng.choice(_BIZ_KINDS)}", False
    if kind < 0.65:
        return f"{rng.choice(_BIZ_WORDS)} {rng.choice(_BIZ_KINDS)}", False
    suffix = rng.choice(_CORP_SUFFIXES)
    words = f"{rng.choice(_BIZ_WORDS)} {rng.choice(_CORP_WORDS)}"
    if rng.random() < 0.3:
        words = f"{rng.choice(_LAST)} & {rng.choice(_LAST)}"
    return (f"{words} {suffix}" if suffix else words), True


def _victim(rng: random.Random, people: _People, is_business: bool) -> _Victim:
    if not is_business:
        name = people.draw()
        return _Victim(
            name=name,
            is_business=False,
            age=rng.randint(16, 89) if rng.random() < 0.85 else None,
            email=_email_for(rng, name) if rng.random() < 0.2 else None,
        )
    name, corporate = _business(rng, people)
    victim = _Victim(name=name, is_business=True)
    roles = 0
    if rng.random() < (0.3 if corporate else 0.65):
        victim.owner = people.draw()
        victim.age = rng.randint(22, 79) if rng.random() < 0.5 else None
        roles += 1
    if rng.random() < 0.4:
        victim.manager = people.draw()
        roles += 1
    if corporate and rng.random() < 0.8:
        victim.ceo = people.draw()
        roles += 1
    if rng.random() < 0.35:
        domain = re.sub(r"[^a-z]", "", name.lower()) or "business"
        user = rng.choice(("info", "contact", "office", "manager", "hello", "admin"))
        victim.email = f"{user}@{domain}.{rng.choice(('com', 'net', 'org', 'biz'))}"
    if roles == 0 and rng.random() < 0.5:
        victim.manager = people.draw()
    return victim


def _suspect(rng: random.Random) -> tuple[str, bool]:
    """A suspect description (no leading article) and whether it describes several people."""
    if rng.random() < 0.08:
        return rng.choice((
            "two young men in dark clothing",
            "two teenagers on bicycles",
            "three males wearing ski masks",
            "four juveniles",
            "two women in their 20s",
        )), True
    male = rng.random() < 0.75
    sex = rng.choice(("male", "man") if male else ("female", "woman"))
    pron = "his" if male else "her"
    build = rng.choice(("tall", "short", "heavyset", "slim", "stocky", "thin", "medium-build", "muscular", ""))
    age = rng.choice((f"in {pron} {rng.choice(('20s', '30s', '40s', '50s', 'late teens', 'early 30s', 'mid-40s'))}",
                      f"approximately {rng.randint(18, 60)} years old", f"aged about {rng.randint(18, 60)}",
                      ""))
    height = rng.choice(("about 6 feet tall", "approximately 5'9\"", "around 5'4\"", "6'2\"",
                         "roughly 180 cm tall", "of average height", ""))
    hair = rng.choice(("with short dark hair", "with a shaved head",
                       "with a beard" if male else "with long blonde hair",
                       "with curly black hair", "with a gray ponytail", "with glasses", ""))
    clothes = rng.choice((
        "wearing a black hoodie and jeans", "dressed in a gray sweatshirt and a red baseball cap",
        "last seen wearing a green jacket", "wearing a white T-shirt and camouflage shorts",
        "in a dark blue tracksuit", "wearing a yellow raincoat", "wearing a face mask and black gloves",
        "in a security guard uniform", "wearing a brown leather jacket", "",
    ))
    extra = rng.choice(("driving a silver sedan", "riding a blue bicycle", "who fled in a white pickup truck",
                        "carrying a black backpack", "with a tattoo on the left forearm", "", "", ""))
    if rng.random() < 0.5:
        head = " ".join(w for w in (build, sex, age) if w)
        rest = [p for p in (height, hair, clothes, extra) if p]
        text = ", ".join([head, *rest[:2]]) if rng.random() < 0.5 else " ".join([head, *rest[:2]])
    else:
        parts = [p for p in (sex, age, height, hair, clothes, extra) if p]
        text = ", ".join(parts[:4])
    return text, False


def _summary(rng: random.Random, crime: str, premise: str, detail: str) -> str:
    crime_lc = crime[0].lower() + crime[1:]
    forms = (
        f"{_a(crime_lc).capitalize()} {crime_lc} occurred at the {premise}; {detail}.",
        f"{detail[0].upper()}{detail[1:]}.",
        f"{_a(crime_lc).capitalize()} {crime_lc} was reported at the {premise}, where {detail}.",
        f"Reported {crime_lc} at the {premise}: {detail}.",
        f"{'It was' if detail.startswith('the victim') else 'The victim'} reported that {detail}.",
        f"Officers responded to {_a(premise)} {premise} after {detail}.",
    )
    return rng.choice(forms)


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# ----------------------------------------------------------------------------------------------
# Rendering helpers


def _fill(template: str, **slots: Piece | list[Piece]) -> list[Piece]:
    """Template ``"at {loc}."`` with slots (plain strings, entities or piece lists) -> pieces."""
    out: list[Piece] = []
    for i, part in enumerate(re.split(r"\{(\w+)\}", template)):
        if i % 2 == 0:
            if part:
                out.append(part)
        else:
            value = slots[part]
            out.extend(value if isinstance(value, list) else [value])
    return out


def _cap(pieces: list[Piece]) -> list[Piece]:
    """Upper-case the first character of the first piece (entity text included)."""
    if not pieces:
        return pieces
    first = pieces[0]
    if isinstance(first, tuple):
        return [(first[0][:1].upper() + first[0][1:], first[1]), *pieces[1:]]
    return [first[:1].upper() + first[1:], *pieces[1:]]


def _join(items: list[list[Piece]], rng: random.Random, final: str | None = None) -> list[Piece]:
    """``a, b and c`` (or ``a, b, and c``) from item piece lists."""
    if final is None:
        final = rng.choice((" and ", ", and ", " and "))
    out: list[Piece] = []
    for i, item in enumerate(items):
        if i:
            out.append(" and " if len(items) == 2 else final if i == len(items) - 1 else ", ")
        out.extend(item)
    return out


def _evidence_item(rng: random.Random, item: str, articles: bool) -> list[Piece]:
    head = item.split(" from ")[0].split(" of ")[0]
    plural = head.endswith("s") and not head.endswith("ss") or head.endswith(("footage", "video", "glass", "powder"))
    if articles and not plural and rng.random() < 0.7:
        return [f"{_a(item)} ", (item, "Evidence_Type")]
    return [(item, "Evidence_Type")]


def _badge_phrase(rng: random.Random, badge: str) -> list[Piece]:
    template = rng.choice((
        "Badge #{b}", "Badge No. {b}", "badge number {b}", "#{b}", "ID {b}", "Badge: {b}", "badge {b}",
        "Badge {b}", "Badge ID {b}", "Serial No. {b}",
    ))
    return _fill(template, b=(badge, "Officer_BadgeNumber"))


def _crime_list(rng: random.Random, facts: _Facts, lower: bool) -> list[Piece]:
    names = [c[0].lower() + c[1:] if lower else c for c in facts.crime_types]
    return _join([[(n, "Crime_Type")] for n in names], rng, final=" and ")


def _suspect_text(rng: random.Random, desc: str, plural: bool, article: bool) -> list[Piece]:
    if article and not plural:
        return [f"{_a(desc)} ", (desc, "Suspect_Description")]
    return [(desc, "Suspect_Description")]


def _assemble(pieces: list[Piece]) -> Report:
    text_parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    for piece in pieces:
        if isinstance(piece, tuple):
            value, label = piece
            spans.append(Span(pos, pos + len(value), label))
        else:
            value = piece
            # "2:30 p.m." at the end of a sentence: do not write "p.m.."
            if value.startswith(".") and text_parts and text_parts[-1].endswith("."):
                value = value[1:]
        text_parts.append(value)
        pos += len(value)
    text = "".join(text_parts)
    assert text == text.strip(), "reports have no surrounding whitespace"
    return Report(text=text, spans=sorted(spans, key=lambda s: (s.start, s.end)))


# ----------------------------------------------------------------------------------------------
# Style 1: labelled fields


def _field_line(rng: random.Random, style: str, label: str, value: list[Piece]) -> list[Piece]:
    if style == "bold":
        return [f"**{label}:** ", *value]
    if style == "upper":
        return [f"{label.upper()}: ", *value]
    if style == "dash":
        return [f"- {label}: ", *value]
    if style == "bolddash":
        return [f"- **{label}**: ", *value]
    return [f"{label}: ", *value]


def _field_victims(rng: random.Random, facts: _Facts) -> list[Piece]:
    parts: list[list[Piece]] = []
    for v in facts.victims:
        parts.append(_victim_field(rng, v))
    sep = rng.choice(("; ", " / ", ". Second victim: "))
    out: list[Piece] = []
    for i, p in enumerate(parts):
        if i:
            out.append(sep)
        out.extend(p)
    return out


def _age_piece(rng: random.Random, age: int) -> list[Piece]:
    return _fill(rng.choice((", age {a}", " ({a})", ", {a}", ", aged {a}", ", {a} years old", " (age {a})")),
                 a=(str(age), "Victim_Age"))


def _victim_field(rng: random.Random, v: _Victim) -> list[Piece]:
    if not v.is_business:
        out: list[Piece] = [(v.name, "Victim_Name")]
        if v.age is not None:
            if rng.random() < 0.15:
                out = _fill("Name: {n}; Age: {a}", n=(v.name, "Victim_Name"), a=(str(v.age), "Victim_Age"))
            else:
                out += _age_piece(rng, v.age)
        if v.email:
            out += _fill(rng.choice((", email: {e}", " ({e})", ", contact {e}", ", e-mail {e}")),
                         e=(v.email, "Victim_Email"))
        return out
    clauses: list[list[Piece]] = []
    if v.owner:
        clause = _fill(rng.choice(("owned by {p}", "owner: {p}", "owner {p}", "proprietor {p}")),
                       p=(v.owner, "Victim_Owner"))
        if v.age is not None:
            clause += _age_piece(rng, v.age)
        clauses.append(clause)
    if v.manager:
        clauses.append(_fill(rng.choice(("managed by {p}", "manager: {p}", "store manager {p}", "{p} (manager)")),
                             p=(v.manager, "Victim_Manager")))
    if v.ceo:
        clauses.append(_fill(rng.choice(("CEO {p}", "CEO: {p}", "chief executive {p}", "{p}, CEO")),
                             p=(v.ceo, "Victim_CEO")))
    if v.email:
        clauses.append(_fill(rng.choice(("email {e}", "contact: {e}", "reachable at {e}", "e-mail: {e}")),
                             e=(v.email, "Victim_Email")))
    out = [(v.name, "Victim_Name")]
    sep = rng.choice((", ", "; "))
    for clause in clauses:
        out += [sep, *clause]
    return out


def _fields_report(rng: random.Random, f: _Facts) -> list[Piece]:
    style = rng.choice(("bold", "bold", "bold", "plain", "upper", "dash", "bolddash"))
    fields: list[tuple[str, list[Piece]]] = []
    fields.append((rng.choice(("Crime Type", "Type of Crime", "Offense", "Incident Type", "Nature of Incident",
                               "Offence", "Crime")), _crime_list(rng, f, lower=False)))
    if f.date and f.time and rng.random() < 0.6:
        joint = rng.choice(("{d}, at {t}", "{d} at {t}", "{d}, {t}", "{d} {t}", "{t} on {d}", "{d} - approx. {t}"))
        fields.append((rng.choice(("Date and Time", "Date/Time", "Date & Time", "Incident Date/Time", "When",
                                   "Occurred")), _fill(joint, d=(f.date, "Crime_Date"), t=(f.time, "Crime_Time"))))
    else:
        if f.date:
            fields.append((rng.choice(("Date", "Date of Incident", "Incident Date", "Date of Occurrence")),
                           [(f.date, "Crime_Date")]))
        if f.time:
            fields.append((rng.choice(("Time", "Time of Incident", "Approx. Time", "Time of Occurrence")),
                           [(f.time, "Crime_Time")]))
    if f.location:
        fields.append((rng.choice(("Location", "Address", "Incident Location", "Place of Occurrence", "Scene",
                                   "Where")), [(f.location, "Location")]))
    if f.officer:
        officer: list[Piece] = [(f.officer, "Officer_Name")]
        label = rng.choice(("Reporting Officer", "Officer", "Responding Officer", "Officer in Charge",
                            "Reported by", "Investigating Officer"))
        if f.badge and rng.random() < 0.6:
            sep = rng.choice((", ", " ", " - ", " ("))
            officer += [sep, *_badge_phrase(rng, f.badge)] + ([")"] if sep == " (" else [])
            fields.append((label, officer))
        else:
            fields.append((label, officer))
            if f.badge:
                fields.append((rng.choice(("Badge Number", "Badge #", "Badge No.", "Officer ID", "Badge")),
                               [(f.badge, "Officer_BadgeNumber")]))
    if f.summary:
        fields.append((rng.choice(("Summary", "Incident Summary", "Narrative", "Synopsis", "Brief Description",
                                   "Details", "Summary of Events")), [(f.summary, "Crime_Summary")]))
    fields.append((rng.choice(("Description of Victim(s)", "Victim", "Victim(s)", "Victim Information",
                               "Complainant", "Injured Party", "Victim Details")), _field_victims(rng, f)))
    if f.evidence:
        items = [_evidence_item(rng, e, articles=True) for e in f.evidence]
        if rng.random() < 0.2:
            value: list[Piece] = []
            for item in items:
                value += ["\n  - ", *item]
        else:
            value = _cap(_join(items, rng)) + (["."] if rng.random() < 0.5 else [])
        fields.append((rng.choice(("Evidence Collected", "Evidence", "Items Collected", "Physical Evidence",
                                   "Evidence Recovered", "Evidence Logged")), value))
    elif rng.random() < 0.4:
        fields.append(("Evidence", [rng.choice(_NOT_GIVEN)]))
    witness_label = rng.choice(("Witnesses", "Witness(es)", "Witness Names", "Witness", "Eyewitnesses"))
    if f.witnesses:
        roles = ("neighbor", "store clerk", "passerby", "coworker", "security guard", "bus driver", "resident")
        items = [[(w, "Witness_Name")] + ([f" ({rng.choice(roles)})"] if rng.random() < 0.3 else [])
                 for w in f.witnesses]
        fields.append((witness_label, _join(items, rng)))
    elif rng.random() < 0.5:
        fields.append((witness_label, [rng.choice(_NOT_GIVEN)]))
    suspect_label = rng.choice(("Suspect Description", "Suspect(s)", "Description of Suspect", "Suspect Information",
                                "Suspect", "Person of Interest"))
    if f.suspects:
        descs = [_cap([(d, "Suspect_Description")]) for d, _ in f.suspects]
        value = []
        for i, d in enumerate(descs):
            if len(descs) > 1:
                value.append(f"{'; ' if i else ''}Suspect {i + 1}: ")
            value += d
        fields.append((suspect_label, value))
    elif rng.random() < 0.5:
        fields.append((suspect_label, [rng.choice(_NOT_GIVEN)]))
    if f.status:
        fields.append((rng.choice(("Status", "Case Status", "Current Status", "Investigation Status", "Disposition")),
                       _cap([(f.status, "Crime_Status")])))
    # distractor fields that carry no entity
    if rng.random() < 0.3:
        fields.append((rng.choice(("Case Number", "Report No.", "Incident #")), [f.case_number]))
    if rng.random() < 0.2:
        fields.append(("Injuries", [rng.choice(("None reported", "Minor injuries", "Treated at the scene", "None"))]))
    if rng.random() < 0.15:
        fields.append(("Weather", [rng.choice(("Clear", "Rain", "Overcast", "Snow", "Fog"))]))

    if rng.random() < 0.6:
        head, tail = fields[:1], fields[1:]
        rng.shuffle(tail)
        # keep most fields near their usual place; shuffle only for some reports
        fields = head + tail if rng.random() < 0.5 else fields
    else:
        rng.shuffle(fields)
    lines: list[list[Piece]] = []
    header = rng.random()
    if header < 0.3:
        lines.append([rng.choice(("INCIDENT REPORT", "Crime Report", "Police Report",
                                  f"{f.city} Police Department - Incident Report", "OFFENSE REPORT"))])
    for label, value in fields:
        lines.append(_field_line(rng, style, label, value))
    sep = "\n\n" if rng.random() < 0.2 else "\n"
    out: list[Piece] = []
    for i, line in enumerate(lines):
        if i:
            out.append(sep)
        out.extend(line)
    return out


# ----------------------------------------------------------------------------------------------
# Style 2: narrative


def _opening(rng: random.Random, f: _Facts, with_officer: bool) -> tuple[list[Piece], bool]:
    """The first sentence: crime, date, time, place (whichever exist). Returns (pieces, officer used)."""
    crime = _crime_list(rng, f, lower=True)
    a = _a(f.crime_types[0])
    when: list[Piece] = []
    if f.date and f.time:
        when = _fill(rng.choice(("on {d} at {t}", "on {d}, at approximately {t}", "at {t} on {d}",
                                 "shortly after {t} on {d}", "on {d} around {t}")),
                     d=(f.date, "Crime_Date"), t=(f.time, "Crime_Time"))
    elif f.date:
        when = _fill(rng.choice(("on {d}", "on the date of {d}")), d=(f.date, "Crime_Date"))
    elif f.time:
        when = _fill(rng.choice(("at {t}", "at about {t}", "around {t}")), t=(f.time, "Crime_Time"))
    where = _fill(rng.choice(("at {l}", "at {l}", "near {l}", "outside {l}", "in front of {l}")),
                  l=(f.location, "Location")) if f.location else []
    officer_used = False
    templates = [
        "{When}, officers were dispatched to a reported {crime} {where}.",
        "{A} {crime} was reported {where} {when}.",
        "Police responded {where} {when} following {a} {crime}.",
        "Dispatch received a call {when} reporting {a} {crime} {where}.",
        "{When}, {a} {crime} took place {where}.",
        "This report concerns {a} {crime} that occurred {where} {when}.",
    ]
    if with_officer and f.officer:
        templates += [
            "{When}, {officer}{badge} responded to a report of {a} {crime} {where}.",
            "{Officer}{badge} was dispatched {where} {when} regarding {a} {crime}.",
        ]
    template = rng.choice(templates)
    if "{officer}" in template.lower():
        officer_used = True
    if not when:
        template = template.replace("{When}, ", "").replace(" {when}", "")
    if not where:
        template = template.replace(" {where}", "")
    badge: list[Piece] = []
    if officer_used and f.badge:
        badge = [rng.choice((" (", ", ")), *_badge_phrase(rng, f.badge)]
        badge.append(")" if badge[0] == " (" else ",")
    pieces = _fill(template, When=_cap(list(when)), when=when, crime=crime, where=where, a=a, A=a.capitalize(),
                   officer=[(f.officer, "Officer_Name")] if f.officer else [],
                   Officer=_cap([(f.officer, "Officer_Name")]) if f.officer else [], badge=badge)
    return _cap(pieces), officer_used


def _officer_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.officer and not f.badge:
        return []
    if not f.officer:
        return _fill(rng.choice(("The responding officer's badge number is {b}.", "Responding unit badge: {b}.")),
                     b=(f.badge, "Officer_BadgeNumber"))
    badge = _badge_phrase(rng, f.badge) if f.badge else []
    template = rng.choice((
        "The report was filed by {o}{bp}.", "{o}{bp} took the report.", "{o}{bp} handled the call.",
        "Reporting officer: {o}{bp}.", "{o}{bp} is the investigating officer.",
    ))
    bp: list[Piece] = [rng.choice((", ", " (")), *badge, ")"] if badge else []
    if bp and bp[0] == ", ":
        bp = bp[:-1]
        if not template.endswith("{bp}."):
            bp.append(",")
    return _cap(_fill(template, o=[(f.officer, "Officer_Name")], bp=bp))


def _victim_sentences(rng: random.Random, v: _Victim) -> list[list[Piece]]:
    name = (v.name, "Victim_Name")
    if not v.is_business:
        age = (str(v.age), "Victim_Age") if v.age is not None else None
        if age:
            template = rng.choice((
                "The victim, {n}, {a}, told officers what happened.", "{n} ({a}) reported the incident.",
                "The victim was identified as {n}, {an} {a}-year-old resident.", "The victim is {n}, age {a}.",
                "{n}, aged {a}, was the victim.", "Victim {n} ({a}) called police.",
                "The complainant, {n}, is {a} years old.",
            ))
            an = "an" if v.age in (11, 18) or 80 <= v.age <= 89 else "a"
            out = [_fill(template, n=name, a=age, an=an)]
        else:
            out = [_fill(rng.choice(("The victim was identified as {n}.", "{n} reported the incident.",
                                     "The complainant is {n}.", "Victim: {n}.")), n=name)]
        if v.email:
            out.append(_fill(rng.choice(("{n} can be reached at {e}.", "Victim email: {e}.",
                                         "Contact email for the victim: {e}.")),
                             n=v.name.split()[0], e=(v.email, "Victim_Email")))
        return out
    out = [_fill(rng.choice(("The victim business is {n}.", "The affected business is {n}.",
                             "The incident took place at {n}.", "{n} was targeted.")), n=name)]
    if v.owner:
        owner = (v.owner, "Victim_Owner")
        if v.age is not None:
            out.append(_fill(rng.choice(("The business is owned by {p}, {a}.", "Owner {p} ({a}) was notified.",
                                         "The owner, {p}, age {a}, reported the loss.")),
                             p=owner, a=(str(v.age), "Victim_Age")))
        else:
            out.append(_fill(rng.choice(("The business is owned by {p}.", "Owner {p} was notified.",
                                         "{p}, the owner, reported the loss.")), p=owner))
    if v.manager:
        out.append(_fill(rng.choice(("The store manager, {p}, spoke with officers.",
                                     "{p}, who manages the business, was present.",
                                     "Manager {p} discovered the incident.")), p=(v.manager, "Victim_Manager")))
    if v.ceo:
        out.append(_fill(rng.choice(("The company's CEO, {p}, was informed.", "CEO {p} requested a copy of the report.",
                                     "{p}, the chief executive, gave a statement.")), p=(v.ceo, "Victim_CEO")))
    if v.email:
        out.append(_fill(rng.choice(("The business can be contacted at {e}.", "Contact email: {e}.",
                                     "Correspondence should go to {e}.")), e=(v.email, "Victim_Email")))
    return [_cap(s) for s in out]


def _evidence_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.evidence:
        return [rng.choice(("No physical evidence was recovered.", "No evidence was collected at the scene."))] \
            if rng.random() < 0.3 else []
    items = _join([_evidence_item(rng, e, articles=True) for e in f.evidence], rng)
    template = rng.choice((
        "Officers collected {l}.", "Evidence recovered at the scene includes {l}.", "{L} {be} collected as evidence.",
        "Investigators secured {l} for analysis.", "Items logged into evidence: {l}.", "The crime scene unit took {l}.",
    ))
    be = "was" if len(f.evidence) == 1 and not f.evidence[0].endswith("s") else "were"
    return _fill(template, l=items, L=_cap(items), be=be)


def _witness_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.witnesses:
        return [rng.choice(("No witnesses were identified.", "There were no witnesses.",
                            "Canvassing the area produced no witnesses."))] if rng.random() < 0.4 else []
    names = _join([[(w, "Witness_Name")] for w in f.witnesses], rng)
    if len(f.witnesses) == 1:
        template = rng.choice((
            "A witness, {w}, saw the incident.", "{w}, a neighbor, called 911.", "Witness {w} gave a statement.",
            "{w} witnessed the incident from across the street.", "A statement was taken from {w}.",
        ))
    else:
        template = rng.choice((
            "Witnesses {w} gave statements at the scene.", "{w} witnessed the incident.",
            "Statements were taken from {w}.", "Officers interviewed witnesses {w}.",
        ))
    return _cap(_fill(template, w=names))


def _suspect_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.suspects:
        return [rng.choice(("No suspect description is available.", "The suspect remains unidentified.",
                            "There is no information about a suspect."))] if rng.random() < 0.4 else []
    if len(f.suspects) == 2:
        (d1, p1), (d2, p2) = f.suspects
        return _fill("Two suspects were seen: {x} and {y}.", x=_suspect_text(rng, d1, p1, True),
                     y=_suspect_text(rng, d2, p2, True))
    desc, plural = f.suspects[0]
    template = rng.choice((
        "The suspect is described as {s}.", "Witnesses described the suspect as {s}.",
        "{S} was seen leaving the scene.",
        "Officers are looking for {s}.", "The suspect, {s}, fled on foot.", "The offender was {s}.",
    ))
    if plural:
        template = template.replace("The suspect is", "The suspects are").replace("the suspect as", "the suspects as") \
            .replace("{S} was", "{S} were").replace("The suspect, {s},", "The suspects, {s},")
    s = _suspect_text(rng, desc, plural, True)
    return _fill(template, s=s, S=_cap(s))


def _status_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.status:
        return []
    status = (f.status, "Crime_Status")
    if f.status in _STATUS_ADJ:
        template = rng.choice(("The case is currently {s}.", "The investigation remains {s}.", "The case is {s}.",
                               "As of this writing, the case is {s}.", "Case status: {S}."))
    else:
        template = rng.choice(("Case status: {S}.", "Status: {S}.", "Current status - {S}.", "Disposition: {S}."))
    return _fill(template, s=status, S=_cap([status]))


def _summary_sentence(rng: random.Random, f: _Facts) -> list[Piece]:
    if not f.summary:
        return []
    lead = rng.choice(("Summary: ", "In summary: ", "Incident summary: ", "Synopsis: ", "Summary of incident - "))
    return [lead, (f.summary, "Crime_Summary")]


def _paragraph(sentences: list[list[Piece]]) -> list[Piece]:
    out: list[Piece] = []
    for s in sentences:
        if s:
            if out:
                out.append(" ")
            out.extend(s)
    return out


def _body(rng: random.Random, f: _Facts, officer_done: bool) -> list[list[Piece]]:
    middle: list[list[Piece]] = []
    for v in f.victims:
        middle.append(_paragraph(_victim_sentences(rng, v)))
    # the detail in plain words, unless the summary is that very sentence (it would be tagged twice)
    if rng.random() < 0.8 and (f.summary or "").lower() != f"{f.detail}.".lower():
        lead = rng.choice(("", "", "According to the report, ", "Initial findings indicate that ", "It appears that "))
        detail = f"{lead}{f.detail}."
        middle.append([detail[0].upper() + detail[1:]])
    middle += [_evidence_sentence(rng, f), _witness_sentence(rng, f), _suspect_sentence(rng, f)]
    rng.shuffle(middle)
    if not officer_done:
        middle.insert(rng.randrange(len(middle) + 1), _officer_sentence(rng, f))
    return middle + [_status_sentence(rng, f)]


def _narrative_report(rng: random.Random, f: _Facts) -> list[Piece]:
    opening, officer_done = _opening(rng, f, with_officer=rng.random() < 0.5)
    sentences = [opening] + _body(rng, f, officer_done)
    summary = _summary_sentence(rng, f)
    if rng.random() < 0.5:
        paragraphs = [_paragraph(sentences)]
    else:  # two paragraphs
        cut = rng.randint(1, len(sentences) - 1)
        paragraphs = [_paragraph(sentences[:cut]), _paragraph(sentences[cut:])]
    if summary:
        if rng.random() < 0.4:
            paragraphs.insert(0, summary)
        else:
            paragraphs.append(summary)
    out: list[Piece] = []
    for p in paragraphs:
        if p:
            if out:
                out.append("\n\n")
            out.extend(p)
    return out


# ----------------------------------------------------------------------------------------------
# Style 3: header fields, then narrative


def _hybrid_report(rng: random.Random, f: _Facts) -> list[Piece]:
    style = rng.choice(("bold", "plain", "upper"))
    lines: list[list[Piece]] = []
    if rng.random() < 0.5:
        lines.append(_field_line(rng, style, rng.choice(("Case Number", "Report #", "Incident No.")), [f.case_number]))
    lines.append(_field_line(rng, style, rng.choice(("Offense", "Incident", "Crime Type")), _crime_list(rng, f, False)))
    if f.date:
        lines.append(_field_line(rng, style, rng.choice(("Date", "Date of Incident")), [(f.date, "Crime_Date")]))
    if f.time:
        lines.append(_field_line(rng, style, rng.choice(("Time", "Reported Time")), [(f.time, "Crime_Time")]))
    if f.location:
        lines.append(_field_line(rng, style, rng.choice(("Location", "Address")), [(f.location, "Location")]))
    if f.officer:
        officer: list[Piece] = [(f.officer, "Officer_Name")]
        if f.badge:
            officer += [", ", *_badge_phrase(rng, f.badge)]
        lines.append(_field_line(rng, style, rng.choice(("Officer", "Reporting Officer")), officer))
    elif f.badge:
        lines.append(_field_line(rng, style, "Badge", [(f.badge, "Officer_BadgeNumber")]))
    body = _paragraph(_body(rng, f, officer_done=True))
    lines.append(_field_line(rng, style, rng.choice(("Narrative", "Details", "Description")), body))
    out: list[Piece] = []
    for i, line in enumerate(lines):
        out += (["\n"] if i else []) + line
    if f.summary:
        out += ["\n", *_field_line(rng, style, rng.choice(("Summary", "Synopsis")), [(f.summary, "Crime_Summary")])]
    return out
