"""Write the bundled Chinese samples: data/sample/cmeee_ner.json and data/sample/medical_cot_zh.jsonl.

    python data/sample/generate_zh.py         # rewrites both files; same seed -> same bytes

cmeee_ner.json is in the format of the CMeEE-V2 files: a JSON list of {"text", "entities": [{"start_idx",
"end_idx", "type", "entity"}]} with an inclusive end_idx (text[start_idx:end_idx + 1] == entity), nested
entities (a body part inside a disease or symptom, a microbe inside a disease) and the nine CMeEE types.
Every occurrence of an annotated string in a row is annotated, with one type, which the generator checks.
medical_cot_zh.jsonl holds Chinese rows in the medical-o1 columns (Question, Complex_CoT, Response), the
shape of its `zh` config. The text is ours, composed from the table below; teaching material, not advice.
"""

import json
import random
from pathlib import Path

SEED = 3407
NER_ROWS = 240
COT_ROWS = 120
NER_OUT = Path(__file__).with_name("cmeee_ner.json")
COT_OUT = Path(__file__).with_name("medical_cot_zh.jsonl")

# An entity is (text, type, nested), nested = ((substring, type), ...) annotated inside it.
CONDITIONS = [
    {"dis": ("急性阑尾炎", "dis", (("阑尾", "bod"),)), "dep": "普外科",
     "sym": [("转移性右下腹痛", "sym", (("右下腹", "bod"),)), ("发热", "sym", ()), ("食欲减退", "sym", ())],
     "ite": ("白细胞计数", "升高"), "exam": ("腹部超声", "pro", (("腹部", "bod"),)),
     "treat": ("腹腔镜阑尾切除术", "pro", (("阑尾", "bod"),)), "dru": "头孢曲松", "equ": "引流管", "mic": "大肠埃希菌",
     "clue": "疼痛由脐周转移至右下腹", "diff": "右侧输尿管结石", "rule_out": "尿常规未见红细胞",
     "plan": "在静脉使用抗生素的基础上尽早行阑尾切除术"},
    {"dis": ("肺炎链球菌肺炎", "dis", (("肺炎链球菌", "mic"),)), "dep": "呼吸内科",
     "sym": [("咳铁锈色痰", "sym", ()), ("高热", "sym", ()), ("胸痛", "sym", ())],
     "ite": ("中性粒细胞比例", "升高"), "exam": ("胸部CT", "pro", (("胸部", "bod"),)),
     "treat": ("氧疗", "pro", ()), "dru": "阿莫西林", "equ": "雾化器", "mic": "肺炎链球菌",
     "clue": "影像学可见大叶性实变", "diff": "肺结核", "rule_out": "痰涂片未见抗酸杆菌",
     "plan": "口服阿莫西林，病情重时联合大环内酯类抗生素"},
    {"dis": ("2型糖尿病", "dis", ()), "dep": "内分泌科",
     "sym": [("多饮", "sym", ()), ("多尿", "sym", ()), ("体重下降", "sym", ())],
     "ite": ("空腹血糖", "升高"), "exam": ("眼底检查", "pro", (("眼底", "bod"),)),
     "treat": ("饮食控制", "pro", ()), "dru": "二甲双胍", "equ": "血糖仪", "mic": None,
     "clue": "糖化血红蛋白超过6.5%", "diff": "1型糖尿病", "rule_out": "患者无酮症倾向且胰岛功能尚存",
     "plan": "生活方式干预并首选二甲双胍"},
    {"dis": ("急性心肌梗死", "dis", (("心肌", "bod"),)), "dep": "心内科",
     "sym": [("胸骨后压榨性疼痛", "sym", (("胸骨", "bod"),)), ("大汗", "sym", ()), ("濒死感", "sym", ())],
     "ite": ("肌钙蛋白", "升高"), "exam": ("心电图", "pro", ()),
     "treat": ("经皮冠状动脉介入治疗", "pro", (("冠状动脉", "bod"),)), "dru": "阿司匹林", "equ": "心电监护仪",
     "mic": None, "clue": "下壁导联ST段抬高", "diff": "主动脉夹层", "rule_out": "双上肢血压对称且纵隔不宽",
     "plan": "立即嚼服阿司匹林并尽快行急诊介入治疗"},
    {"dis": ("甲状腺功能亢进症", "dis", (("甲状腺", "bod"),)), "dep": "内分泌科",
     "sym": [("心悸", "sym", ()), ("怕热多汗", "sym", ()), ("甲状腺弥漫性肿大", "sym", (("甲状腺", "bod"),))],
     "ite": ("TSH", "降低"), "exam": ("甲状腺超声", "pro", (("甲状腺", "bod"),)),
     "treat": ("放射性碘治疗", "pro", ()), "dru": "甲巯咪唑", "equ": None, "mic": None,
     "clue": "伴有突眼", "diff": "亚急性甲状腺炎", "rule_out": "甲状腺无压痛且摄碘率升高",
     "plan": "用β受体阻滞剂控制症状并口服甲巯咪唑"},
    {"dis": ("缺铁性贫血", "dis", ()), "dep": "血液科",
     "sym": [("乏力", "sym", ()), ("面色苍白", "sym", ()), ("活动后气促", "sym", ())],
     "ite": ("血清铁蛋白", "降低"), "exam": ("胃镜检查", "pro", ()),
     "treat": ("输血", "pro", ()), "dru": "硫酸亚铁", "equ": None, "mic": None,
     "clue": "小细胞低色素性贫血", "diff": "地中海贫血", "rule_out": "血清铁蛋白降低而非正常或升高",
     "plan": "口服铁剂并寻找慢性失血的来源"},
    {"dis": ("十二指肠溃疡", "dis", (("十二指肠", "bod"),)), "dep": "消化内科",
     "sym": [("空腹上腹痛", "sym", (("上腹", "bod"),)), ("反酸", "sym", ()), ("黑便", "sym", ())],
     "ite": ("尿素呼气试验", "阳性"), "exam": ("胃镜检查", "pro", ()),
     "treat": ("根除治疗", "pro", ()), "dru": "奥美拉唑", "equ": None, "mic": "幽门螺杆菌",
     "clue": "进食后疼痛缓解", "diff": "胃溃疡", "rule_out": "疼痛规律为空腹痛而非餐后痛",
     "plan": "质子泵抑制剂联合两种抗生素根除幽门螺杆菌"},
    {"dis": ("支气管哮喘", "dis", (("支气管", "bod"),)), "dep": "呼吸内科",
     "sym": [("反复喘息", "sym", ()), ("夜间咳嗽", "sym", ()), ("胸闷", "sym", ())],
     "ite": ("呼出气一氧化氮", "升高"), "exam": ("肺功能检查", "pro", ()),
     "treat": ("雾化吸入", "pro", ()), "dru": "沙丁胺醇", "equ": "雾化器", "mic": None,
     "clue": "支气管舒张试验阳性", "diff": "慢性阻塞性肺疾病", "rule_out": "气流受限可逆且患者不吸烟",
     "plan": "按需吸入沙丁胺醇并规律使用吸入性糖皮质激素"},
    {"dis": ("急性膀胱炎", "dis", (("膀胱", "bod"),)), "dep": "泌尿外科",
     "sym": [("尿频", "sym", ()), ("尿急", "sym", ()), ("尿痛", "sym", ())],
     "ite": ("尿亚硝酸盐", "阳性"), "exam": ("中段尿培养", "pro", ()),
     "treat": ("多饮水", "pro", ()), "dru": "呋喃妥因", "equ": "导尿管", "mic": "大肠埃希菌",
     "clue": "无发热及腰痛", "diff": "急性肾盂肾炎", "rule_out": "肾区无叩痛且体温正常",
     "plan": "短程口服呋喃妥因"},
    {"dis": ("急性胆囊炎", "dis", (("胆囊", "bod"),)), "dep": "肝胆外科",
     "sym": [("右上腹痛", "sym", (("右上腹", "bod"),)), ("墨菲征阳性", "sym", ()), ("恶心", "sym", ())],
     "ite": ("C反应蛋白", "升高"), "exam": ("腹部超声", "pro", (("腹部", "bod"),)),
     "treat": ("腹腔镜胆囊切除术", "pro", (("胆囊", "bod"),)), "dru": "头孢哌酮", "equ": "引流管",
     "mic": "大肠埃希菌", "clue": "超声见胆囊壁增厚伴结石嵌顿", "diff": "急性胰腺炎", "rule_out": "血淀粉酶正常",
     "plan": "静脉使用抗生素并早期行腹腔镜胆囊切除术"},
]
HISTORY = [("高血压", "dis", ()), ("冠心病", "dis", ()), ("慢性肾脏病", "dis", (("肾脏", "bod"),)), ("痛风", "dis", ())]
NO_ENTITY_TEXTS = ["患者一般情况可，饮食睡眠正常。", "嘱患者定期随访，不适随诊。", "家属了解病情，同意进一步处理。"]


class Row:
    """Text built piece by piece, recording the inclusive span of every entity as it is appended."""

    def __init__(self):
        self.text, self.entities = "", []

    def add(self, piece) -> None:
        if isinstance(piece, str):
            self.text += piece
            return
        name, kind, nested = piece
        start = len(self.text)
        self.text += name
        self.entities.append((start, start + len(name) - 1, kind, name))
        for sub, sub_kind in nested:
            offset = name.index(sub)
            self.entities.append((start + offset, start + offset + len(sub) - 1, sub_kind, sub))

    def check(self) -> dict:
        """Every annotated string is annotated wherever it occurs, with one type."""
        kinds = {}
        for start, end, kind, name in self.entities:
            assert self.text[start:end + 1] == name
            assert kinds.setdefault(name, kind) == kind, (name, self.text)
        for name, kind in kinds.items():
            places = {i for i in range(len(self.text)) if self.text.startswith(name, i)}
            marked = {s for s, _, k, n in self.entities if n == name}
            assert places == marked, (name, self.text)
        entities = sorted(set(self.entities), key=lambda e: (e[0], -e[1], e[2]))
        return {"text": self.text, "entities": [
            {"start_idx": s, "end_idx": e, "type": k, "entity": n} for s, e, k, n in entities]}


def ner_row(rng) -> dict:
    row = Row()
    if rng.random() < 0.05:
        row.add(rng.choice(NO_ENTITY_TEXTS))
        return row.check()
    cond = rng.choice(CONDITIONS)
    first, second = rng.sample(cond["sym"], 2)
    for piece in (f"患者{rng.randint(18, 85)}岁，因", first, f"{rng.randint(1, 10)}天就诊于", (cond["dep"], "dep", ()),
                  "，伴", second, "。"):
        row.add(piece)
    if rng.random() < 0.7:
        for piece in ("查", (cond["ite"][0], "ite", ()), cond["ite"][1], "。"):
            row.add(piece)
    for piece in ("行", cond["exam"], "，诊断为", cond["dis"], "。"):
        row.add(piece)
    if cond["mic"] and rng.random() < 0.6:
        for piece in ("培养检出", (cond["mic"], "mic", ()), "。"):
            row.add(piece)
    if rng.random() < 0.8:
        for piece in ("予", (cond["dru"], "dru", ()), "治疗", "。" if rng.random() < 0.5 else "，并行"):
            row.add(piece)
        if row.text.endswith("并行"):
            for piece in (cond["treat"], "。"):
                row.add(piece)
    if cond["equ"] and rng.random() < 0.5:
        for piece in ("随后使用", (cond["equ"], "equ", ()), "。"):
            row.add(piece)
    if rng.random() < 0.4:
        for piece in ("既往有", rng.choice(HISTORY), "病史。"):
            row.add(piece)
    return row.check()


def cot_row(rng) -> dict:
    cond = rng.choice(CONDITIONS)
    age, sex = rng.randint(18, 85), rng.choice("男女")
    (first, *_), (second, *_) = rng.sample(cond["sym"], 2)
    ite, finding = cond["ite"]
    dis, exam = cond["dis"][0], cond["exam"][0]
    question = (f"一名{age}岁{sex}性患者，{first}{rng.randint(1, 10)}天，伴{second}。检查发现{ite}{finding}，"
                f"{cond['clue']}。最可能的诊断是什么？应如何处理？")
    reasoning = (f"好的，我们来分析一下。患者为{age}岁{sex}性，主要表现为{first}，伴{second}。{ite}{finding}，"
                 f"同时{cond['clue']}，这一点最有提示意义。结合{exam}的结果，首先考虑{dis}。"
                 f"需要与{cond['diff']}鉴别，但{cond['rule_out']}，不支持该诊断。所以诊断为{dis}，"
                 f"治疗上应{cond['plan']}。")
    answer = f"最可能的诊断是{dis}。处理：{cond['plan']}。"
    return {"Question": question, "Complex_CoT": reasoning, "Response": answer}


def main() -> None:
    rng = random.Random(SEED)
    ner = []
    while len(ner) < NER_ROWS:  # distinct rows only, so prepare finds no duplicates
        row = ner_row(rng)
        ner += [row] if row not in ner else []
    NER_OUT.write_text(json.dumps(ner, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    rows = []
    while len(rows) < COT_ROWS:
        row = cot_row(rng)
        rows += [row] if row not in rows else []
    COT_OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(ner)} rows to {NER_OUT} and {len(rows)} rows to {COT_OUT}")


if __name__ == "__main__":
    main()
