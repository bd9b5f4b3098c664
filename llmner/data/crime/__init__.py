"""Crime reports: a synthetic generator, its three views (BIO, JSON, conversation), an importer
for conversation JSONL files and the corpora the training datamodule reads.

Annotation conventions shared by the generator and the hand-written fixture:

- ``Officer_Name`` keeps a rank written right before the name ("Officer John Smith", "Sgt. Ana Ruiz").
- ``Officer_BadgeNumber`` is the number alone: in "Badge #1457" the span is "1457".
- ``Victim_Name`` is a person or a business; ``Victim_Owner``/``_Manager``/``_CEO`` are people.
- ``Victim_Age`` is the digits alone; the JSON answer is an integer.
- ``Evidence_Type`` is one span per item, without a leading article ("a shopping bag" -> "shopping bag").
- ``Suspect_Description`` is the descriptive phrase, without a leading article.
- Placeholders such as "Not provided", "None" or "Unknown" are not entities.
"""

ENTITY_TYPES: tuple[str, ...] = (
    "Location",
    "Officer_BadgeNumber",
    "Officer_Name",
    "Victim_Name",
    "Victim_Age",
    "Victim_Owner",
    "Victim_Manager",
    "Victim_CEO",
    "Victim_Email",
    "Crime_Type",
    "Crime_Date",
    "Crime_Time",
    "Crime_Summary",
    "Crime_Status",
    "Evidence_Type",
    "Witness_Name",
    "Suspect_Description",
)
