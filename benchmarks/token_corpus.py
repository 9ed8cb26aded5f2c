# ruff: noqa: E501, RUF001  (natural-language paragraphs, kept one per line)
"""A mixed corpus for calibrating and checking token estimates, built from what is on disk.

Five kinds of text, each sliced into samples of about 1,500 characters (multilingual
paragraphs into overlapping 300-character samples): English technical prose (the Python
documentation's topics, shipped with CPython as ``pydoc_data``), Python source (from the
standard library), JSON (the LLMCompiler datasets in ``shared/data``, when present, else JSON
made from the prose), numbers (a seeded CSV table), and paragraphs in seven languages written
for this corpus (German, French, Spanish, Russian, Chinese, Japanese, Arabic).
"""

from __future__ import annotations

import inspect
import random
from pathlib import Path

__all__ = ["MULTILINGUAL", "corpus", "samples"]

DATA = Path(__file__).resolve().parents[2] / "shared/data/llmcompiler"

MULTILINGUAL = {
    "de": """Die Stadtbibliothek bleibt wegen Renovierungsarbeiten bis Ende März geschlossen. Bereits ausgeliehene Bücher können in dieser Zeit am Rückgabeautomaten im Erdgeschoss des Rathauses abgegeben werden; Mahngebühren werden für den gesamten Zeitraum ausgesetzt. Nach der Wiedereröffnung stehen den Besucherinnen und Besuchern ein größerer Lesesaal, zwanzig neue Arbeitsplätze mit Stromanschluss und eine Kinderecke mit mehr als dreitausend Bilderbüchern zur Verfügung. Die Kosten des Umbaus belaufen sich nach Angaben der Verwaltung auf rund 1,8 Millionen Euro, von denen das Land etwa zwei Drittel übernimmt. Wer Fragen zur Fernleihe oder zu Vormerkungen hat, erreicht das Team weiterhin telefonisch von Montag bis Freitag zwischen neun und zwölf Uhr.""",
    "fr": """Le Marianne, un petit voilier construit en 1962 à Concarneau, a été restauré pendant trois hivers par une association de bénévoles. Les travaux ont commencé par le remplacement complet du bordé, dont plusieurs planches avaient pourri sous la ligne de flottaison, puis se sont poursuivis par la réfection du pont en teck et la remise en état du moteur d'origine. « Nous voulions garder l'esprit du bateau tel qu'il était à sa sortie du chantier », explique la présidente de l'association. Le voilier participera cet été à la fête maritime de Douarnenez, où il sera ouvert au public chaque après-midi. Les visiteurs pourront y découvrir une exposition de photographies anciennes ainsi que les carnets de bord tenus par son premier propriétaire.""",
    "es": """El observatorio de la sierra registró anoche una lluvia de meteoros más intensa de lo previsto: los astrónomos contaron hasta ochenta trazos por hora entre las dos y las cuatro de la madrugada, cuando el cielo estuvo completamente despejado. Según el director del centro, el fenómeno se debe a que la Tierra atravesó una zona especialmente densa de los restos que dejó un cometa hace varios siglos. Cientos de aficionados subieron con mantas y termos de café hasta el mirador, a más de dos mil metros de altitud, y algunos consiguieron fotografías espectaculares. El observatorio recuerda que las próximas noches todavía podrán verse algunos meteoros, aunque la luna creciente dificultará la observación de los más débiles.""",
    "ru": """Новая линия метро соединит северные районы города с центром уже к концу следующего года. Строители завершили проходку тоннеля длиной почти семь километров и приступили к отделке станций, каждая из которых будет оформлена в собственном стиле. По словам главного инженера проекта, самым сложным участком оказался переход под рекой: грунт там насыщен водой, и работы пришлось вести при постоянной откачке. После открытия линии время поездки от конечной станции до центра сократится с пятидесяти минут до двадцати. Жители окрестных домов надеются, что вместе с метро в районе появятся новые магазины, поликлиника и парковка для велосипедов.""",
    "zh": """这座古老的石桥建于明朝，全长约八十米，由十一个桥孔组成，是当地现存最完整的古代桥梁之一。几百年来，它经历了多次洪水和地震，却依然屹立在河面上。近年来，文物部门对桥面进行了加固，并修复了栏杆上的石狮子雕刻。每到周末，许多游客来到这里散步、拍照，附近的小吃街也因此热闹起来。当地老人说，小时候他们常在桥下捉鱼，夏天的傍晚整个村子的人都会到桥上乘凉聊天。如今，政府计划在桥边建设一座小型博物馆，展示与石桥有关的历史资料和老照片，让更多人了解这座桥背后的故事。""",
    "ja": """駅前の商店街では、毎年秋になると小さな音楽祭が開かれます。地元の高校の吹奏楽部や、近くの大学のジャズサークル、そして商店街の店主たちによるバンドが、アーケードの下に設けられた三つのステージで演奏します。今年は天気にも恵まれ、二日間で約一万二千人が訪れました。主催者によると、音楽祭を始めた十年前には来場者は千人ほどだったそうです。子ども向けの楽器体験コーナーも人気で、初めてトランペットを吹いた男の子は「思ったより大きな音が出てびっくりした」と笑顔で話していました。来年は駅の反対側の広場にもステージを増やす予定です。""",
    "ar": """افتتحت المدينة هذا الأسبوع حديقة عامة جديدة على ضفاف النهر، تمتد على مساحة تزيد على عشرين هكتارًا وتضم مسارات للمشي وركوب الدراجات وملاعب للأطفال. وقد زُرعت فيها أكثر من ثلاثة آلاف شجرة من الأنواع المحلية التي تتحمل الحرارة وقلة المياه. وقال رئيس البلدية في حفل الافتتاح إن الحديقة ستخفف من ازدحام المتنزهات القديمة في وسط المدينة، وستوفر مساحة خضراء لسكان الأحياء الجديدة. ويأمل المسؤولون أن تصبح الحديقة مكانًا للأنشطة الثقافية في عطلات نهاية الأسبوع، مثل الحفلات الموسيقية والأسواق الشعبية.""",
}


def corpus() -> dict[str, str]:
    """The corpus's texts by kind (the multilingual one is the paragraphs joined)."""
    import argparse
    import asyncio.base_events
    import dataclasses
    import json.decoder
    import pydoc_data.topics
    import typing

    texts = {"prose": "\n\n".join(v for _, v in sorted(pydoc_data.topics.topics.items()))}
    modules = (asyncio.base_events, json.decoder, argparse, dataclasses, typing)
    texts["code"] = "".join(inspect.getsource(module) for module in modules)
    files = [DATA / "parallelqa_dataset.json", DATA / "movie_recommendations_formatted.json"]
    if all(file.is_file() for file in files):
        texts["json"] = "".join(file.read_text(encoding="utf-8") for file in files)
    else:
        items = list(pydoc_data.topics.topics.items())[:200]
        texts["json"] = json.dumps([{"topic": k, "text": v[:300]} for k, v in items], indent=1)
    rng = random.Random(0)
    rows = ["id,name,value,ratio,date"]
    for i in range(20_000):
        rows.append(
            f"{i},item{rng.randint(1, 9999)},{rng.randint(0, 10**7)},{rng.random():.4f},"
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        )
    texts["numbers"] = "\n".join(rows)
    texts["multilingual"] = "\n\n".join(MULTILINGUAL.values())
    return texts


def samples(limit: int = 300_000) -> list[tuple[str, str]]:
    """(kind, text) samples: 1,500-character slices of each kind's first ``limit`` characters;
    the multilingual paragraphs as overlapping 300-character slices."""
    out: list[tuple[str, str]] = []
    for kind, text in corpus().items():
        if kind == "multilingual":
            continue
        for start in range(0, min(len(text), limit), 1500):
            out.append((kind, text[start : start + 1500]))
    for paragraph in MULTILINGUAL.values():
        for start in range(0, len(paragraph), 150):
            out.append(("multilingual", paragraph[start : start + 300]))
    return out
