"""Classes of words the rules and the parse reader share: what an occupation is. A word
list, not a phrase list: the rules (tenant_agent/memory/learn.py) and the parse
(tenant_agent/memory/structure.py) find *that* the tenant says what it is; this says whether
what it is is a job ("a nurse", "a data scientist") or something else ("a meat eater", "a big
reader", "a night owl"), which no suffix tells (-er, -or, -ist made "meat eater" a job)."""

from __future__ import annotations

OCCUPATIONS = frozenset("""
accountant actor actress administrator admin agent analyst animator architect artist assistant
associate astronaut athlete attorney auditor author baker banker barber barista bartender
biologist blogger bookkeeper broker builder butcher buyer cabbie carer caregiver carpenter
cashier ceo cfo chauffeur chef chemist cleaner clerk coach coder columnist comedian composer
consultant contractor cook coo coordinator copywriter counselor counsellor courier cto curator
dancer dentist designer detective dev developer dietitian diplomat director dispatcher doctor
driver economist editor educator electrician engineer entrepreneur estimator farmer
firefighter fisherman florist foreman founder freelancer gardener geologist guard hairdresser
historian housekeeper hygienist illustrator inspector instructor intern interpreter investor
janitor jeweler jeweller journalist judge laborer labourer landscaper lawyer lead lecturer
librarian lifeguard lineman locksmith machinist magician manager marketer mathematician
mechanic medic midwife miner minister model mortician musician nanny navigator negotiator
neurologist nurse nutritionist officer operator optician optometrist painter paralegal
paramedic pastor pediatrician pharmacist philosopher phlebotomist photographer physician
physicist physiotherapist pilot planner plumber pm poet policeman policewoman politician
porter postman postwoman priest principal producer professor programmer psychiatrist
psychologist publisher qa rabbi radiologist realtor receptionist recruiter reporter
researcher roofer sailor salesman saleswoman salesperson scientist secretary senator
shopkeeper singer soldier solicitor sommelier sonographer specialist sre statistician steward
stewardess streamer student supervisor surgeon surveyor swe tailor teacher technician
therapist trader translator trucker tutor typist underwriter undertaker ux ui veterinarian
vet vicar waiter waitress welder writer youtuber
""".split())  # noqa: SIM905 (a word list reads better as text)
