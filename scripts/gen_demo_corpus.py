#!/usr/bin/env python3
"""Writes the small English + Chinese corpus the demo and the end-to-end test learn from.

    python3 scripts/gen_demo_corpus.py data/demo

The text describes an invented world of river towns: every town has fixed facts (its river,
mountain, dish, craft, festival, founding century), and documents (guides, diaries, letters,
stories) state those facts in varied sentences among random everyday events. A tiny model
can learn both the grammar and the facts in a few minutes on a CPU, so its validation loss
falls well below the unigram baseline, and instruction prompts about the towns
(`prompts.jsonl`) have answers the corpus supports. Deterministic: the same seed writes the
same bytes. Only the standard library is used.
"""

import gzip
import json
import random
import sys
from pathlib import Path

SEED = 20261128
N_TOWNS = 48
EN_DOCS = 1400
ZH_DOCS = 1100
PROMPTS_PER_LANG = 24

EN_SYLLABLES = ["bel", "mor", "ka", "lin", "dor", "va", "sen", "tar", "ro", "mi", "han", "el",
                "qu", "sto", "ne", "ri", "ash", "fen", "cal", "wyn", "bra", "tul", "or", "is"]
ZH_FIRST = list("临清安长平永兴宁福云江青白河乐德南东西新")
ZH_SECOND = list("川州城阳山溪水桥湾口源镇原林堡渡")

RIVERS = [("Silver", "银"), ("Jade", "玉"), ("Amber", "琥珀"), ("Willow", "柳"), ("Heron", "鹭"),
          ("Stone", "石"), ("Cloud", "云"), ("Iron", "铁"), ("Pearl", "珠"), ("Reed", "芦")]
MOUNTAINS = [("Eagle", "鹰"), ("Pine", "松"), ("Moon", "月"), ("Thunder", "雷"), ("Crane", "鹤"),
             ("Bell", "钟"), ("Tiger", "虎"), ("Snow", "雪")]
DISHES = [("river fish with ginger", "姜丝河鱼"), ("sweet rice cakes", "甜米糕"),
          ("lamb noodles", "羊肉面"), ("pepper tofu", "麻辣豆腐"), ("chestnut soup", "板栗汤"),
          ("steamed buns with leeks", "韭菜包子"), ("duck with plums", "梅子鸭"),
          ("cold cucumber salad", "凉拌黄瓜"), ("honey pears", "蜂蜜梨"), ("millet porridge", "小米粥")]
CRAFTS = [("paper umbrellas", "油纸伞"), ("blue cotton cloth", "蓝印花布"), ("bamboo baskets", "竹篮"),
          ("copper kettles", "铜壶"), ("silk fans", "丝绸扇子"), ("clay teapots", "紫砂壶"),
          ("wooden boats", "木船"), ("paper lanterns", "纸灯笼"), ("glass beads", "玻璃珠")]
FESTIVALS = [("lantern festival", "灯会", "winter", "冬天"), ("boat race", "赛龙舟", "summer", "夏天"),
             ("harvest fair", "丰收节", "autumn", "秋天"), ("flower market", "花市", "spring", "春天"),
             ("kite festival", "风筝节", "spring", "春天"), ("music night", "音乐节", "summer", "夏天")]
CENTURIES = [(n, f"{n}th", f"{n}世纪") for n in range(9, 18)]

EN_PEOPLE = ["a teacher", "an old fisherman", "a young painter", "a doctor", "two students",
             "a baker", "a ferryman", "a tea seller", "a carpenter", "a retired soldier",
             "a letter carrier", "a weaver", "a farmer", "a traveller from the coast"]
EN_EVENTS = [
    "{p} was mending a net near the water",
    "{p} sold us warm bread and told us about the weather",
    "{p} showed us the way to the old bridge",
    "{p} was reading under a tree in the main square",
    "{p} sang a song that everyone in the street seemed to know",
    "{p} explained how the market has changed over the years",
    "{p} carried a basket of apples up the hill",
    "{p} repaired a bicycle outside the station",
    "{p} painted the roofs of the houses along the river",
    "{p} invited us to drink tea in a small courtyard",
]
EN_WEATHER = ["The morning was cold and clear.", "It rained all afternoon.",
              "A warm wind came down from the hills.", "The sky was grey but the air was soft.",
              "Snow covered the roofs by the evening.", "The sun was bright and the streets were busy.",
              "Fog lay on the river until noon.", "The evening was quiet and mild."]
EN_CLOSINGS = ["We left the next morning and promised to return.",
               "I would recommend a visit to anyone who likes quiet places.",
               "It is a good place to spend a few slow days.",
               "Many visitors say it is the friendliest town on the river.",
               "We took the evening boat back and talked about it all the way home.",
               "I still think about that trip when I cook at home."]

ZH_PEOPLE = ["一位老师", "一个老渔民", "一位年轻的画家", "一位医生", "两个学生", "一位面包师",
             "一个船夫", "一位卖茶的老人", "一位木匠", "一位退休的军人", "一个邮递员", "一位织布的女工",
             "一位农民", "一个从海边来的游客"]
ZH_EVENTS = [
    "{p}正在河边补渔网",
    "{p}卖给我们热乎乎的面包，还聊起了天气",
    "{p}给我们指了去老桥的路",
    "{p}坐在广场的树下看书",
    "{p}唱了一首街上人人都会唱的歌",
    "{p}讲了这些年市场的变化",
    "{p}背着一筐苹果上山",
    "{p}在车站外面修自行车",
    "{p}正在给河边的房子刷屋顶",
    "{p}请我们到小院子里喝茶",
]
ZH_WEATHER = ["那天早上又冷又晴。", "整个下午都在下雨。", "一阵暖风从山上吹下来。",
              "天空灰蒙蒙的，但是空气很柔和。", "到了傍晚，雪盖满了屋顶。", "阳光很好，街上很热闹。",
              "上午河面上一直有雾。", "傍晚安静而温和。"]
ZH_CLOSINGS = ["第二天早上我们离开了，答应以后还会再来。", "我愿意把这里推荐给喜欢安静的人。",
               "这是一个适合慢慢住几天的地方。", "很多游客说这是河边最友好的小城。",
               "我们坐晚班船回去，一路上都在聊这次旅行。", "现在在家做饭的时候，我还会想起那次旅行。"]


def make_towns(rng):
    towns, en_seen, zh_seen = [], set(), set()
    while len(towns) < N_TOWNS:
        en = (rng.choice(EN_SYLLABLES) + rng.choice(EN_SYLLABLES) + rng.choice(["", "a", "en", "ford", "by", "ton"])).capitalize()
        zh = rng.choice(ZH_FIRST) + rng.choice(ZH_SECOND)
        if en in en_seen or zh in zh_seen or len(en) < 5:
            continue
        en_seen.add(en)
        zh_seen.add(zh)
        towns.append({
            "en": en, "zh": zh,
            "river": rng.choice(RIVERS), "mountain": rng.choice(MOUNTAINS),
            "dish": rng.choice(DISHES), "craft": rng.choice(CRAFTS),
            "festival": rng.choice(FESTIVALS), "century": rng.choice(CENTURIES),
            "bridges": rng.randint(2, 9),
        })
    return towns


def en_facts(t):
    river, mountain = t["river"][0], t["mountain"][0]
    return [
        f"{t['en']} lies on the {river} River, below {mountain} Mountain.",
        f"The town of {t['en']} was founded in the {t['century'][1]} century.",
        f"People in {t['en']} are proud of their {t['dish'][0]}.",
        f"The workshops of {t['en']} are known for {t['craft'][0]}.",
        f"Every {t['festival'][2]}, {t['en']} holds a {t['festival'][0]}.",
        f"There are {t['bridges']} stone bridges across the {river} River in {t['en']}.",
        f"From the top of {mountain} Mountain you can see all of {t['en']}.",
    ]


def zh_facts(t):
    river, mountain = t["river"][1], t["mountain"][1]
    return [
        f"{t['zh']}位于{river}河边，在{mountain}山脚下。",
        f"{t['zh']}建于{t['century'][2]}。",
        f"{t['zh']}人最喜欢的菜是{t['dish'][1]}。",
        f"{t['zh']}的作坊以{t['craft'][1]}出名。",
        f"每年{t['festival'][3]}，{t['zh']}都会举办{t['festival'][1]}。",
        f"{t['zh']}的{river}河上有{t['bridges']}座石桥。",
        f"站在{mountain}山顶上，可以看到整个{t['zh']}。",
    ]


def en_doc(rng, t):
    facts = en_facts(t)
    rng.shuffle(facts)
    kind = rng.choice(["guide", "diary", "letter"])
    paragraphs = []
    if kind == "guide":
        paragraphs.append(f"A short guide to {t['en']}. " + " ".join(facts[:3]))
    elif kind == "diary":
        paragraphs.append(f"Day {rng.randint(2, 30)} of our trip. We arrived in {t['en']} by boat. " + rng.choice(EN_WEATHER))
    else:
        paragraphs.append(f"Dear {rng.choice(['Anna', 'Tom', 'Mei', 'Lukas', 'Sara', 'Wei'])}, I am writing to you from {t['en']}. " + rng.choice(EN_WEATHER))
    rest = facts[3:] if kind == "guide" else facts
    events = rng.sample(EN_EVENTS, 4)
    for i in range(rng.randint(2, 4)):
        sentences = [rest[i % len(rest)]]
        for e in events[i:i + 2]:
            sentences.append("In the " + rng.choice(["morning", "afternoon", "evening"]) + ", " + e.format(p=rng.choice(EN_PEOPLE)) + ".")
        sentences.append(rng.choice(EN_WEATHER))
        paragraphs.append(" ".join(sentences))
    paragraphs.append(rng.choice(EN_CLOSINGS))
    return "\n\n".join(paragraphs)


def zh_doc(rng, t):
    facts = zh_facts(t)
    rng.shuffle(facts)
    kind = rng.choice(["guide", "diary", "letter"])
    paragraphs = []
    if kind == "guide":
        paragraphs.append(f"{t['zh']}旅行小指南。" + "".join(facts[:3]))
    elif kind == "diary":
        paragraphs.append(f"旅行第{rng.randint(2, 30)}天，我们坐船到了{t['zh']}。" + rng.choice(ZH_WEATHER))
    else:
        paragraphs.append(f"亲爱的{rng.choice(['小明', '阿华', '美玲', '老王', '丽丽', '建国'])}：我现在在{t['zh']}给你写信。" + rng.choice(ZH_WEATHER))
    rest = facts[3:] if kind == "guide" else facts
    events = rng.sample(ZH_EVENTS, 4)
    for i in range(rng.randint(2, 4)):
        sentences = [rest[i % len(rest)]]
        for e in events[i:i + 2]:
            sentences.append(rng.choice(["早上", "下午", "晚上"]) + "，" + e.format(p=rng.choice(ZH_PEOPLE)) + "。")
        sentences.append(rng.choice(ZH_WEATHER))
        paragraphs.append("".join(sentences))
    paragraphs.append(rng.choice(ZH_CLOSINGS))
    return "\n\n".join(paragraphs)


def prompts(rng, towns):
    """Instructions about the towns in the labeler's import shape, each with the answer the
    corpus supports in `meta.reference`, the town asked about (`meta.town`) and the fact the
    answer states (`meta.fact`: its river, dish, craft or century)."""
    rows = []
    for i, t in enumerate(rng.sample(towns, PROMPTS_PER_LANG)):
        river, mountain = t["river"], t["mountain"]
        # (question, reference answer, the fact it states)
        en = [
            (f"Where is {t['en']}?", f"{t['en']} lies on the {river[0]} River, below {mountain[0]} Mountain.", f"{river[0]} River"),
            (f"What should I eat in {t['en']}?", f"People in {t['en']} are proud of their {t['dish'][0]}.", t["dish"][0]),
            (f"What is {t['en']} known for?", f"The workshops of {t['en']} are known for {t['craft'][0]}.", t["craft"][0]),
            (f"When was {t['en']} founded?", f"The town of {t['en']} was founded in the {t['century'][1]} century.", f"{t['century'][1]} century"),
        ]
        zh = [
            (f"{t['zh']}在哪里？", f"{t['zh']}位于{river[1]}河边，在{mountain[1]}山脚下。", f"{river[1]}河"),
            (f"在{t['zh']}应该吃什么？", f"{t['zh']}人最喜欢的菜是{t['dish'][1]}。", t["dish"][1]),
            (f"{t['zh']}以什么出名？", f"{t['zh']}的作坊以{t['craft'][1]}出名。", t["craft"][1]),
            (f"{t['zh']}是什么时候建的？", f"{t['zh']}建于{t['century'][2]}。", t["century"][2]),
        ]
        q, a, fact = en[i % 4]
        rows.append({"id": f"en-{i:02d}", "prompt": q, "meta": {"lang": "en", "reference": a, "town": t["en"], "fact": fact}})
        q, a, fact = zh[i % 4]
        rows.append({"id": f"zh-{i:02d}", "prompt": q, "meta": {"lang": "zh", "reference": a, "town": t["zh"], "fact": fact}})
    return rows


def write_jsonl_gz(path, rows):
    # mtime=0: the same rows give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/demo")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    towns = make_towns(rng)
    en = [{"id": f"towns-en-{i:05d}", "text": en_doc(rng, rng.choice(towns)), "url": f"https://towns.example/en/{i}"} for i in range(EN_DOCS)]
    zh = [{"id": f"towns-zh-{i:05d}", "text": zh_doc(rng, rng.choice(towns)), "url": f"https://towns.example/zh/{i}"} for i in range(ZH_DOCS)]
    write_jsonl_gz(out / "towns-en.jsonl.gz", en)
    write_jsonl_gz(out / "towns-zh.jsonl.gz", zh)
    with open(out / "prompts.jsonl", "w", encoding="utf-8") as f:
        for row in prompts(rng, towns):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(en)} English and {len(zh)} Chinese documents and {2 * PROMPTS_PER_LANG} prompts to {out}")


if __name__ == "__main__":
    main()
