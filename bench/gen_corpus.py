"""Writes a deterministic English/Chinese JSONL corpus of about SIZE_MB megabytes for
scripts/bench-pipeline: varied prose, some boilerplate-heavy pages, and planted exact and
near duplicates, so every filter and the dedup stages have work to do."""
import json
import random
import sys

size_mb, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(0)
words = [w.strip() for w in """the of and to in is that it was for on are as with his they at be this from
have or by one had not but what all were when we there can an your which their said if do will each
about how up out them then she many some so these would other into has more her two like him see time
could no make than first been its who now people my made over did down only way find use may water long
little very after words called just where most know river mountain library harbor garden market bridge
forest village station museum school kitchen orchard festival railway castle valley teacher farmer
painter doctor student traveller quiet busy ancient modern narrow wide bright gentle famous small""".split()]
zh_words = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严""")
zh_punct = ["，", "，", "。", "。", "！", "？"]

def english():
    paras = []
    for _ in range(rng.randint(3, 9)):
        sents = []
        for _ in range(rng.randint(3, 7)):
            n = rng.randint(8, 22)
            s = " ".join(rng.choice(words) for _ in range(n))
            sents.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"]))
        paras.append(" ".join(sents))
    return "\n\n".join(paras)

def chinese():
    paras = []
    for _ in range(rng.randint(3, 8)):
        out = []
        for _ in range(rng.randint(60, 200)):
            out.append(rng.choice(zh_words))
            if rng.random() < 0.08:
                out.append(rng.choice(zh_punct))
        paras.append("".join(out) + "。")
    return "\n\n".join(paras)

def boilerplate():
    return "\n".join(rng.choice(["Home", "About us", "Contact", "Login", "Cart", "Privacy policy"]) for _ in range(30))

target = size_mb * 1_000_000
written = 0
recent = []
with open(path, "w", encoding="utf-8") as f:
    i = 0
    while written < target:
        r = rng.random()
        if r < 0.05 and recent:
            text = rng.choice(recent)  # exact duplicate
        elif r < 0.10 and recent:
            base = rng.choice(recent).split(" ")
            base[rng.randrange(len(base))] = "changed"
            text = " ".join(base)  # near duplicate
        elif r < 0.15:
            text = boilerplate()
        elif r < 0.45:
            text = chinese()
        else:
            text = english()
        if rng.random() < 0.02:
            text += f" Contact me at user{i}@example.com or 10.0.{i % 250}.{i % 200}."
        recent.append(text)
        if len(recent) > 1000:
            recent.pop(0)
        line = json.dumps({"id": f"bench-{i}", "text": text, "url": f"https://bench.example/{i}"}, ensure_ascii=False)
        f.write(line + "\n")
        written += len(line.encode("utf-8")) + 1
        i += 1
print(f"{i} documents, {written / 1e6:.1f} MB", file=sys.stderr)
