"""The varied crime generator (``variety=varied``): the classic styles plus eight more, from grammars.

A report's facts are drawn as in ``generator.py``, rewritten in more forms (``phrasing.vary_facts``)
and written in one of eleven styles: the three classic ones (labelled fields, narrative, hybrid) or
an officer's first-person narrative, a terse dispatch (CAD) log, a newspaper blotter entry, a press
release, an e-mail memo, a table (pipes, or aligned columns), the victim's statement (prose, or an
interview's questions and answers) or a detective's bulleted case notes. The new styles share one clause
grammar (``CLAUSES``: when, where, the victim, witnesses, suspects, evidence, status, summary)
and differ in their frame, their ordering and the rules they add or replace (``Grammar.extend``);
forms may write names "Last, First" and some logs and tables are all capitals.

A drawn report is kept only if importing its conversation view would give back its spans exactly
(``locate_values``, as ``importer.py`` does); otherwise it is drawn again. That keeps the
round-trip promise of ``generator.py`` without constraining every template by hand.
"""

from __future__ import annotations

import random

from llmner.data.crime import ENTITY_TYPES
from llmner.data.crime import generator as g
from llmner.data.crime.grammar import Grammar, Piece, cap
from llmner.data.crime.phrasing import vary_facts
from llmner.data.crime.views import report_to_json
from llmner.data.text import locate_values

VARIETIES = ("classic", "varied")
STYLES = ("fields", "narrative", "hybrid", "first_person", "log", "blotter", "release", "memo", "table", "statement",
          "notes")
_WEIGHTS = (18, 13, 5, 12, 10, 9, 8, 7, 6, 6, 6)

CLAUSES = Grammar({
    "when_dt": ("on {date} at {time}", "on {date}, at approximately {time}", "at about {time} on {date}",
                "on {date} at around {time}", "at {time} on {date}"),
    "when_d": ("on {date}", "on {date}", "during the day on {date}"),
    "when_t": ("at {time}", "at approximately {time}", "shortly before {time}"),
    "at": ("at {loc}", "at {loc}", "near {loc}", "in the area of {loc}", "outside {loc}"),
    "to": ("to {loc}", "to {loc}", "to the area of {loc}", "out to {loc}"),
    "title": ("Mr. ", "Ms. ", "Mrs. ", "Dr. "),
    "victim_age": ("The victim, <title?>{vname}, {vage}, was interviewed at the scene.",
                   "I made contact with the victim, <title?>{vname}, age {vage}.",
                   "{vname}, {vage}, reported the incident.", "The victim is <title?>{vname} ({vage}).",
                   "The victim was identified as <title?>{vname}, who is {vage} years old.",
                   "The complainant, {vname} (age {vage}), called it in.",
                   "Victim: {vname}, {vage}.", "Contact was made with <title?>{vname} ({vage}), the victim.",
                   "The victim ({vname}, {vage}) was not injured.", "Reporting party {vname}, age {vage}, met officers on scene.",
                   "<title?>{vname}, a {vage}-year-old local resident, is the victim."),
    "victim": ("The victim, <title?>{vname}, was interviewed at the scene.", "I spoke with the victim, {vname}.",
               "<title?>{vname} reported the incident.", "The victim was identified as <title?>{vname}.",
               "The reporting party is {vname}.", "Victim: {vname}.", "Officers met with the victim, <title?>{vname}.",
               "The incident was reported by the victim, <title?>{vname}.", "<title?>{vname} is listed as the victim."),
    "email": ("Email on file: {vemail}.", "The victim's email address is {vemail}.", "Contact: {vemail}.",
              "Follow-up can be sent to {vemail}."),
    "wit1": ("A witness, {wits}, saw what happened.", "I spoke with {wits}, who witnessed the incident.",
             "{wits} was present and gave a statement.", "Witness: {wits}.", "A statement was obtained from {wits}."),
    "witn": ("Witnesses {wits} gave statements.", "Statements were taken from {wits}.",
             "I interviewed {wits}, who were present.", "Witnesses: {wits}."),
    "susp": ("The suspect was described as {susp}.", "The suspect is {susp}.", "Suspect description: {susp}.",
             "Witnesses described {susp} leaving the area.", "Police are looking for {susp}."),
    "ev": ("Evidence collected: {ev}.", "{Ev} {be} collected.", "I photographed and tagged {ev} into evidence.",
           "The following items were booked into property: {ev}.", "Recovered at the scene: {ev}."),
    "status": ("The case is {status}.", "Status: {status}.", "Disposition: {Status}.",
               "The investigation remains {status}.", "Case status - {Status}."),
    "status_noun": ("Status: {Status}.", "Disposition: {Status}.", "Case status - {Status}."),
    "summary_line": ("Summary: {summary}", "Synopsis: {summary}", "Brief: {summary}", "Narrative: {summary}",
                     "Incident description: {summary}", "{summary}", "{summary}"),
})


# press releases and memos speak of officers in the third person
THIRD_PERSON = CLAUSES.extend({
    "victim_age": ("The victim, <title?>{vname}, {vage}, spoke with officers.", "The victim is {vname}, {vage}.",
                   "<title?>{vname}, {vage}, reported the incident."),
    "victim": ("The victim was identified as <title?>{vname}.", "<title?>{vname} reported the incident."),
    "ev": ("Officers collected {ev}.", "{Ev} {be} collected.", "Investigators recovered {ev}.",
           "Evidence includes {ev}."),
    "wit1": ("A witness, {wits}, spoke with officers.", "{wits} witnessed the incident."),
})


def _people_forms(rng: random.Random, f: g._Facts) -> None:
    """Forms and logs often write victims and witnesses "Last, First"."""
    def flip(name: str) -> str:
        parts = name.split()
        return f"{parts[1]}, {parts[0]}" if len(parts) == 2 else name
    if rng.random() < 0.35:
        for v in f.victims:
            if not v.is_business:
                v.name = flip(v.name)
        f.witnesses = [flip(w) for w in f.witnesses]


def _slots(rng: random.Random, f: g._Facts) -> dict:
    """The slots of ``CLAUSES`` that do not depend on one victim."""
    crime = g._crime_list(rng, f, lower=True)
    ev = g._join([g._evidence_item(rng, e, articles=True) for e in f.evidence], rng) if f.evidence else []
    wits = g._join([[(w, "Witness_Name")] for w in f.witnesses], rng) if f.witnesses else []
    susp: list[Piece] = []
    for i, (desc, plural) in enumerate(f.suspects):
        susp += ([" and "] if i else []) + g._suspect_text(rng, desc, plural, True)
    status = (f.status, "Crime_Status") if f.status else None
    return {"date": (f.date, "Crime_Date") if f.date else None, "time": (f.time, "Crime_Time") if f.time else None,
            "loc": (f.location, "Location") if f.location else None, "crime": crime, "Crime": cap(list(crime)),
            "a": g._a(f.crime_types[0]), "officer": (f.officer, "Officer_Name") if f.officer else None,
            "badge": (f.badge, "Officer_BadgeNumber") if f.badge else None, "ev": ev, "Ev": cap(list(ev)),
            "be": "was" if len(f.evidence) == 1 and not f.evidence[0].endswith("s") else "were",
            "wits": wits, "susp": susp, "status": status, "Status": cap([status]) if status else None,
            "summary": (f.summary, "Crime_Summary") if f.summary else None, "city": f.city}


def _when(rng: random.Random, s: dict) -> list[Piece]:
    rule = "when_dt" if s["date"] and s["time"] else "when_d" if s["date"] else "when_t" if s["time"] else None
    return CLAUSES.expand(rng, rule, s) if rule else []


def _victims(rng: random.Random, f: g._Facts, grammar: Grammar = CLAUSES) -> list[list[Piece]]:
    out: list[list[Piece]] = []
    for v in f.victims:
        if v.is_business:
            out += g._victim_sentences(rng, v)
            continue
        slots = {"vname": (v.name, "Victim_Name"), "vage": (str(v.age), "Victim_Age") if v.age is not None else None}
        out.append(cap(grammar.expand(rng, "victim_age" if v.age is not None else "victim", slots)))
        if v.email:
            out.append(grammar.expand(rng, "email", {"vemail": (v.email, "Victim_Email")}))
    return out


def _facts_sentences(rng: random.Random, f: g._Facts, s: dict, grammar: Grammar = CLAUSES) -> list[list[Piece]]:
    """Victims, witnesses, suspects, evidence (shuffled); the status last."""
    parts = _victims(rng, f, grammar)  # business victims: the classic sentences
    if s["wits"]:
        parts.append(cap(grammar.expand(rng, "wit1" if len(f.witnesses) == 1 else "witn", s)))
    if s["susp"]:
        parts.append(cap(grammar.expand(rng, "susp", s)))
    if s["ev"]:
        parts.append(cap(grammar.expand(rng, "ev", s)))
    rng.shuffle(parts)
    if s["status"]:
        parts.append(grammar.expand(rng, "status" if f.status in g._STATUS_ADJ else "status_noun", s))
    return parts


def _join_lines(lines: list[list[Piece]], sep: str = "\n") -> list[Piece]:
    out: list[Piece] = []
    for line in lines:
        if line:
            out += ([sep] if out else []) + line
    return out


def _first_person(rng: random.Random, f: g._Facts) -> list[Piece]:
    s = _slots(rng, f)
    when, officer = _when(rng, s), s["officer"]
    badge = ([" (Badge #", s["badge"], ")"] if rng.random() < 0.5 else [", badge ", s["badge"]]) if s["badge"] else []
    me: list[Piece] = ["I, ", officer, *badge, ","] if officer else ["I"]
    where = CLAUSES.expand(rng, "to", s) if s["loc"] else []
    opening = g._fill(rng.choice(("{When}, {me} was dispatched {where} regarding a report of {a} {crime}.",
                                  "{When}, {me} responded {where} for a reported {crime}.",
                                  "While on patrol {when}, {me} was sent {where} for {a} {crime} call.")),
                      When=cap(list(when)) or ["At the time of the call"], when=when or ["that day"], me=me,
                      where=where or ["to the scene"], a=s["a"], crime=s["crime"])
    body = _facts_sentences(rng, f, s)
    if s["summary"]:
        body.insert(rng.choice((0, len(body))), CLAUSES.expand(rng, "summary_line", s))
    paragraphs = [cap(opening) + [" "] + _join_lines(body[:2], " "), _join_lines(body[2:], " ")]
    if not officer and s["badge"]:
        paragraphs.append(["Badge: ", s["badge"]])
    return _join_lines([p for p in paragraphs if p], rng.choice(("\n\n", "\n", " ")))


def _log(rng: random.Random, f: g._Facts) -> list[Piece]:
    _people_forms(rng, f)
    s = _slots(rng, f)
    lines: list[list[Piece]] = [[rng.choice(("CAD INCIDENT ", "DISPATCH LOG ", "CALL ", "EVENT ")), f.case_number]]
    call = ["CALL RCVD: " if rng.random() < 0.5 else "INIT: ", *cap(list(s["crime"]))]
    if s["loc"]:
        call += [rng.choice((" @ ", " at ", ", LOC: ")), s["loc"]]
    lines.append(([s["time"], " "] if s["time"] else []) + call)
    if s["date"]:
        lines.insert(1, [rng.choice(("DATE: ", "DT ", "Date: ")), s["date"]])
    if s["officer"] or s["badge"]:
        unit = [s["officer"]] if s["officer"] else []
        unit += ([" #" if unit else "#", s["badge"]] if s["badge"] else [])
        lines.append([rng.choice(("DISP: ", "ASSIGNED: ", "UNIT: ", "R/O: ")), *unit])
    middle: list[list[Piece]] = []
    for v in f.victims:
        if v.is_business:
            middle.append(["V: ", *g._victim_field(rng, v)])
        else:
            age = [rng.choice((", ", " ")), (str(v.age), "Victim_Age"), rng.choice((" y/o", " yoa", ""))] if v.age else []
            email = [", ", (v.email, "Victim_Email")] if v.email else []
            middle.append([rng.choice(("V: ", "V1: ", "RP/V: ", "COMP: ")), (v.name, "Victim_Name"), *age, *email])
    for i, w in enumerate(f.witnesses):
        middle.append([f"W{i + 1}: " if rng.random() < 0.6 else "WIT: ", (w, "Witness_Name")])
    for i, (desc, _) in enumerate(f.suspects):
        middle.append([f"S{i + 1}: " if rng.random() < 0.6 else "SUSP: ", (desc, "Suspect_Description")])
    if f.evidence:
        middle.append([rng.choice(("EVID: ", "PROP: ", "TAGGED: ")), *g._join([[(e, "Evidence_Type")] for e in f.evidence], rng, ", ")])
    if s["summary"]:
        middle.insert(0, [rng.choice(("NARR: ", "NOTES: ", "R/O ADV: ", "")), s["summary"]])
    lines += middle
    if s["status"]:
        lines.append([rng.choice(("DISPO: ", "STATUS: ", "CLR: ")), s["status"]])
    return _join_lines(lines)


def _blotter(rng: random.Random, f: g._Facts) -> list[Piece]:
    s = _slots(rng, f)
    head = g._crime_list(rng, f, lower=False)
    if rng.random() < 0.4:
        head = [(p[0].upper(), p[1]) if isinstance(p, tuple) else p for p in head]
    for key in ("loc", "date", "time"):
        if s[key]:
            head += [rng.choice((" - ", ": ", ", ")) if len(head) == 1 else rng.choice((", ", "; ")), s[key]]
    sentences = [CLAUSES.expand(rng, "summary_line", s)] if s["summary"] else []
    sentences += _facts_sentences(rng, f, s)
    if s["officer"]:
        template = rng.choice(("{o} took the report.", "{o} investigated.", "{o}{b} responded.", "Reporting: {o}{b}."))
        tail = g._fill(template, o=s["officer"], b=[" (badge ", s["badge"], ")"] if s["badge"] else [])
        if s["badge"] and "{b}" not in template:
            tail += [" Badge ", s["badge"], "."]
        sentences.insert(rng.randrange(len(sentences) + 1), cap(tail))
    elif s["badge"]:
        sentences.append(["Badge ", s["badge"], "."])
    return _join_lines([head + ["."], _join_lines(sentences, " ")], rng.choice(("\n", " ", "\n\n")))


def _release(rng: random.Random, f: g._Facts) -> list[Piece]:
    s = _slots(rng, f)
    head = rng.choice(("FOR IMMEDIATE RELEASE", "NEWS RELEASE", f"{f.city} Police Department - Media Release",
                       "PRESS RELEASE", "Public Information Office"))
    when, where = _when(rng, s), CLAUSES.expand(rng, "at", s) if s["loc"] else []
    lead = g._fill("{CITY} - The {city} Police Department is investigating {a} {crime}{sp1}{where}{sp2}{when}.",
                   CITY=f.city.upper() if rng.random() < 0.5 else f.city, city=f.city, a=s["a"], crime=s["crime"],
                   where=where, when=when, sp1=" " if where else "", sp2=" " if when else "")
    sentences = [lead]
    if s["summary"]:
        sentences.append(["According to police, ", (f.summary[0].lower() + f.summary[1:], "Crime_Summary")]
                         if rng.random() < 0.3 and not f.summary.startswith(("A ", "I")) else [s["summary"]])
    sentences += _facts_sentences(rng, f, s, THIRD_PERSON)
    if s["officer"]:
        contact = ["Anyone with information is asked to contact ", s["officer"]]
        contact += [", badge ", s["badge"], "."] if s["badge"] else ["."]
        sentences.append(contact)
    elif s["badge"]:
        sentences.append(["Reference badge ", s["badge"], "."])
    return _join_lines([[head], _join_lines(sentences[:2], " "), _join_lines(sentences[2:], " ")], "\n\n")


def _memo(rng: random.Random, f: g._Facts) -> list[Piece]:
    s = _slots(rng, f)
    head: list[list[Piece]] = [["To: ", rng.choice(("Investigations Unit", "Records", "Shift Supervisor",
                                                    "Detective Bureau", "CID"))]]
    if s["officer"]:
        head.append(["From: ", s["officer"]])
    subject: list[Piece] = ["Subject: ", *s["Crime"]]
    if s["loc"]:
        subject += [rng.choice((" at ", " - ", ", ")), s["loc"]]
    head.append(subject)
    when = _when(rng, s)
    body = [cap([rng.choice(("This memo concerns the ", "Please see below regarding the ", "Writing about the ")),
                 *s["crime"], *([" reported ", *when] if when else []), "."])]
    if s["summary"]:
        body.append(CLAUSES.expand(rng, "summary_line", s))
    body += _facts_sentences(rng, f, s, THIRD_PERSON)
    sign: list[Piece] = [rng.choice(("Regards,", "Thanks,", "-"))]
    if s["badge"]:
        sign += ["\n", "Badge " if rng.random() < 0.5 else "#", s["badge"]]
    return _join_lines([_join_lines(head), _join_lines(body, rng.choice((" ", "\n"))), sign], "\n\n")


def _table(rng: random.Random, f: g._Facts) -> list[Piece]:
    _people_forms(rng, f)
    s = _slots(rng, f)
    rows: list[tuple[str, list[Piece]]] = [(rng.choice(("Offense", "Incident", "Crime")), g._crime_list(rng, f, lower=False))]
    for key, labels in (("date", ("Date", "Occurred")), ("time", ("Time", "Approx. time")),
                        ("loc", ("Location", "Address", "Scene")), ("officer", ("Officer", "R/O", "Reporting officer")),
                        ("badge", ("Badge", "Badge no.", "ID")), ("summary", ("Summary", "Synopsis", "Narrative")),
                        ("wits", ("Witnesses", "Witness(es)")), ("ev", ("Evidence", "Property")),
                        ("status", ("Status", "Disposition"))):
        if s[key]:
            rows.append((rng.choice(labels), s[key] if isinstance(s[key], list) else [s[key]]))
    rows.insert(rng.randint(1, len(rows)), (rng.choice(("Victim", "Victim(s)", "Complainant")), g._field_victims(rng, f)))
    for i, (desc, _) in enumerate(f.suspects):
        rows.append((f"Suspect {i + 1}" if len(f.suspects) > 1 else "Suspect", [(desc, "Suspect_Description")]))
    if rng.random() < 0.5:
        lines: list[list[Piece]] = [["| Field | Value |"], ["|---|---|"]]
        lines += [[f"| {label} | ", *value, " |"] for label, value in rows]
    else:
        width = max(len(label) for label, _ in rows) + 2
        lines = [[label.upper().ljust(width) if rng.random() < 0.3 else f"{label}:".ljust(width), *value] for label, value in rows]
    return _join_lines(lines)


def _statement(rng: random.Random, f: g._Facts) -> list[Piece]:
    """The victim's own written statement, or an interview (Q/A) with them; other facts as they tell them."""
    v = f.victims[0]  # a person (a business victim's report gets another style)
    s = _slots(rng, f)
    name, age = (v.name, "Victim_Name"), (str(v.age), "Victim_Age") if v.age is not None else None
    when, where = _when(rng, s), s["loc"]
    qa = rng.random() < 0.4
    lines: list[list[Piece]] = [[rng.choice(("VOLUNTARY STATEMENT", "Victim statement", "Witness/Victim Statement Form",
                                             "INTERVIEW TRANSCRIPT", "Statement"))]]
    def ask(question: str, answer: list[Piece]) -> None:
        lines.append([f"Q: {question}\nA: ", *answer] if qa else cap(answer))
    ask("State your name.", ["My name is ", name, *([" and I am ", age, " years old."] if age else ["."])])
    for other in f.victims[1:]:  # a second victim is always a person
        ask("Was anyone else involved?", [rng.choice(("My friend ", "Also hurt: ", "With me was ")), (other.name, "Victim_Name"),
                                          *([", ", (str(other.age), "Victim_Age")] if other.age is not None else []),
                                          *([", ", (other.email, "Victim_Email")] if other.email else []), "."])
    if v.email:
        ask("How can we reach you?", ["My email is ", (v.email, "Victim_Email"), "."])
    what: list[Piece] = [rng.choice(("It happened ", "This was ", "The incident was ")), *when] if when else []
    if where:
        what += [" at " if what else "It happened at ", where]
    if what:
        ask("When and where did this happen?", what + ["."])
    ask("What was it?", ["I want to report ", s["a"], " ", *s["crime"], "."])
    if s["summary"]:
        ask("What happened?", [s["summary"]])
    if s["susp"]:
        ask("Describe the person.", [rng.choice(("The person was ", "I saw ", "It was ")), *s["susp"], "."])
    if s["wits"]:
        ask("Did anyone else see it?", [rng.choice(("My neighbor ", "", "Also there: ")), *s["wits"],
                                        " saw it too." if len(f.witnesses) == 1 else " saw it too."])
    if s["ev"]:
        ask("Anything left behind?", ["The police took ", *s["ev"], "."])
    if s["officer"]:
        ask("Who did you speak with?", ["I spoke with ", s["officer"], *([", badge ", s["badge"]] if s["badge"] else []), "."])
    elif s["badge"]:
        ask("Officer's badge?", ["Badge ", s["badge"], "."])
    if s["status"]:
        lines.append([rng.choice(("Status: ", "Case status: ", "Officer's note - status: ")), s["status"]])
    return _join_lines(lines, "\n" if qa or rng.random() < 0.5 else " ")


def _notes(rng: random.Random, f: g._Facts) -> list[Piece]:
    """A detective's case notes: bullets in a shuffled order."""
    s = _slots(rng, f)
    bullet = rng.choice(("- ", "* ", "• ", "> "))
    items: list[list[Piece]] = []
    head = [*s["Crime"]]
    if s["loc"]:
        head += [rng.choice((" at ", " @ ", ", ")), s["loc"]]
    when = _when(rng, s)
    items.append(head + ([" ", *when] if when else []))
    if s["officer"] or s["badge"]:
        items.append(["R/O ", *([s["officer"]] if s["officer"] else []), *([" #", s["badge"]] if s["badge"] else [])])
    rest = [["victim ", *g._field_victims(rng, f)]]
    if s["wits"]:
        rest.append([rng.choice(("wit: ", "witnesses: ", "spoke w/ ")), *s["wits"]])
    if s["susp"]:
        rest.append([rng.choice(("susp: ", "suspect desc: ", "looking for ")), *s["susp"]])
    if s["ev"]:
        rest.append([rng.choice(("evid: ", "collected ", "property: ")), *s["ev"]])
    if s["summary"]:
        rest.append([rng.choice(("summary: ", "what happened: ", "")), s["summary"]])
    rng.shuffle(rest)
    items += rest
    if s["status"]:
        items.append([rng.choice(("status ", "status: ", "dispo ")), s["status"]])
    title = [rng.choice(("Case notes", "NOTES", "Follow-up notes", "Detective notes")), rng.choice((" - ", " ")), f.case_number]
    return _join_lines([title] + [[bullet, *item] for item in items])


_NEW = {"statement": _statement, "notes": _notes, "first_person": _first_person, "log": _log, "blotter": _blotter, "release": _release, "memo": _memo,
        "table": _table}


def _round_trips(report: g.Report) -> bool:
    """Importing the report's conversation view would give back exactly its spans."""
    spans, missing = locate_values(report.text, report_to_json(report), list(ENTITY_TYPES))
    return not missing and spans == report.spans


def generate_varied_report(rng: random.Random, max_tries: int = 50) -> g.Report:
    """One report of the varied generator, drawn from ``rng`` (deterministic for a seeded ``rng``)."""
    return generate_varied_report_with_facts(rng, max_tries)[1]


def generate_varied_report_with_facts(rng: random.Random, max_tries: int = 50) -> tuple[g._Facts, g.Report, str]:
    """``(facts, report, style)``: the facts as written (names may be flipped or capitalised)."""
    for _ in range(max_tries):
        facts = vary_facts(rng, g._sample_facts(rng))
        style = rng.choices(STYLES, weights=_WEIGHTS)[0]
        if style == "statement" and facts.victims[0].is_business:
            style = "first_person"
        if style in _NEW:
            pieces = _NEW[style](rng, facts)
        else:
            if style == "fields" and not facts.officer:
                facts.badge = None  # the classic fields style writes a badge only beside its officer
            pieces = {"fields": g._fields_report, "narrative": g._narrative_report, "hybrid": g._hybrid_report}[style](rng, facts)
        report = g._assemble([p for p in pieces if p != ""])
        if style in ("log", "table", "fields") and rng.random() < 0.2:
            report = g.Report(report.text.upper(), report.spans)  # ASCII: the spans stay where they were
        if _round_trips(report):
            return facts, report, style
    raise RuntimeError(f"no varied report round-trips in {max_tries} draws")  # a bug in a template


def generate_reports(n: int, seed: int = 0, variety: str = "classic") -> list[g.Report]:
    """``n`` reports of the ``variety`` generator; the same arguments always give the same reports."""
    rng = random.Random(seed)
    return [generate(rng, variety) for _ in range(n)]


def generate(rng: random.Random, variety: str = "classic") -> g.Report:
    """One report: ``classic`` (``generator.generate_report``) or ``varied`` (this module)."""
    if variety == "classic":
        return g.generate_report(rng)
    if variety == "varied":
        return generate_varied_report(rng)
    raise ValueError(f"variety must be one of {VARIETIES}, got {variety!r}")
