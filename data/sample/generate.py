"""Write the bundled samples: data/sample/medical_cot.jsonl, data/sample/mcq.jsonl and data/sample/rl.jsonl.

    python data/sample/generate.py            # rewrites the file; same seed -> same bytes

Every row is in the schema of FreedomIntelligence/medical-o1-reasoning-SFT (Question, Complex_CoT,
Response): a clinical vignette, a multi-sentence reasoning in the first person, and a short answer.
mcq.jsonl holds diagnosis questions with four options, alternating the MedQA shape (options dict +
answer_idx) and the MedMCQA shape (opa..opd + 0-based cop), for the MCQ benchmark in evaluate.
rl.jsonl holds verifiable questions for the rl stage: diagnosis MCQs in the MedQA shape, and open-ended questions
in the shape of FreedomIntelligence/medical-o1-verifiable-problem (Open-ended Verifiable Question, Ground-True
Answer) whose answer is a diagnosis or a first-line management; drawn apart from mcq.jsonl (a vignette that
happens to repeat an evaluation question is dropped by the rl stage, and counted).
The text is ours, composed from the condition table below; it is teaching material for the offline
default, not medical advice.
"""

import json
import random
from pathlib import Path

SEED = 3407
ROWS = 320
MCQ_ROWS = 40
OUT = Path(__file__).with_name("medical_cot.jsonl")
MCQ_OUT = Path(__file__).with_name("mcq.jsonl")
RL_ROWS = 64
RL_OUT = Path(__file__).with_name("rl.jsonl")

# name, typical patient, presenting complaint, key findings, discriminating clue, mechanism, first-line management
CONDITIONS = [
    ("acute appendicitis", (10, 30), "periumbilical pain that has moved to the right lower quadrant",
     "fever, anorexia and rebound tenderness at McBurney's point", "the migration of pain to the right iliac fossa",
     "obstruction of the appendiceal lumen with bacterial overgrowth", "appendectomy after intravenous antibiotics"),
    ("acute cholecystitis", (35, 65), "right upper quadrant pain after a fatty meal lasting more than six hours",
     "fever, a positive Murphy sign and a raised white cell count", "pain that persists beyond a biliary colic episode",
     "a gallstone impacted in the cystic duct causing gallbladder inflammation", "intravenous antibiotics and early laparoscopic cholecystectomy"),
    ("diabetic ketoacidosis", (12, 30), "vomiting, abdominal pain and deep rapid breathing",
     "glucose of 28 mmol/L, ketonuria and a low bicarbonate", "Kussmaul respiration with a high anion gap",
     "absolute insulin deficiency driving lipolysis and ketone production", "intravenous fluids, insulin infusion and potassium replacement"),
    ("Graves disease", (20, 45), "weight loss, palpitations and heat intolerance",
     "a diffuse goitre, exophthalmos and a suppressed TSH", "eye signs that other causes of hyperthyroidism lack",
     "TSH-receptor stimulating antibodies", "a beta blocker for symptoms and carbimazole"),
    ("hypothyroidism", (40, 70), "fatigue, weight gain and cold intolerance",
     "dry skin, slow relaxing reflexes and a raised TSH with low free T4", "a raised TSH with a low free T4",
     "autoimmune destruction of the thyroid gland", "levothyroxine replacement"),
    ("iron deficiency anaemia", (20, 50), "tiredness and breathlessness on exertion",
     "pale conjunctivae, microcytic red cells and a low ferritin", "a low ferritin with microcytosis",
     "insufficient iron for haemoglobin synthesis, often from chronic blood loss", "oral iron and a search for the source of loss"),
    ("vitamin B12 deficiency", (50, 80), "tingling in the feet and unsteady gait",
     "a macrocytic anaemia, loss of vibration sense and a low B12", "neurological signs with macrocytosis",
     "impaired DNA synthesis and demyelination of the dorsal columns", "intramuscular hydroxocobalamin"),
    ("community-acquired pneumonia", (30, 80), "cough with rusty sputum and fever",
     "crackles at the right base and consolidation on the chest film", "focal consolidation on imaging",
     "infection of the alveoli, most often by Streptococcus pneumoniae", "oral amoxicillin, adding a macrolide if severe"),
    ("pulmonary embolism", (30, 70), "sudden pleuritic chest pain and breathlessness after a long flight",
     "tachycardia, hypoxia and a swollen calf", "acute dyspnoea with a risk factor for venous thrombosis",
     "a venous thrombus that travelled to the pulmonary arteries", "anticoagulation, confirmed by CT pulmonary angiography"),
    ("asthma exacerbation", (8, 35), "wheeze and breathlessness at night",
     "diffuse expiratory wheeze and a reduced peak flow", "reversible airflow obstruction",
     "airway hyperresponsiveness with bronchoconstriction and mucosal inflammation", "inhaled salbutamol and a short course of oral prednisolone"),
    ("COPD exacerbation", (55, 80), "worsening breathlessness and purulent sputum in a long-term smoker",
     "hyperinflated chest, prolonged expiration and hypercapnia", "fixed airflow obstruction in a smoker",
     "chronic inflammation with small airway narrowing and emphysema", "bronchodilators, oral steroids and controlled oxygen"),
    ("acute myocardial infarction", (45, 80), "crushing central chest pain radiating to the left arm",
     "sweating, ST elevation in the inferior leads and a raised troponin", "ST elevation with a rising troponin",
     "rupture of an atherosclerotic plaque occluding a coronary artery", "aspirin and immediate primary percutaneous coronary intervention"),
    ("heart failure", (60, 85), "breathlessness lying flat and swollen ankles",
     "a raised jugular venous pressure, bibasal crackles and a high BNP", "orthopnoea with a raised BNP",
     "reduced cardiac output with salt and water retention", "loop diuretics, then an ACE inhibitor and a beta blocker"),
    ("atrial fibrillation", (60, 85), "palpitations and light-headedness",
     "an irregularly irregular pulse and absent P waves on the ECG", "absent P waves with an irregular rhythm",
     "disorganised atrial electrical activity", "rate control and anticoagulation guided by stroke risk"),
    ("aortic stenosis", (65, 85), "chest pain and fainting on exertion",
     "a slow-rising pulse and an ejection systolic murmur radiating to the carotids", "a murmur radiating to the carotids",
     "calcific narrowing of the aortic valve", "aortic valve replacement when symptomatic"),
    ("infective endocarditis", (25, 70), "fever and malaise",
     "track marks from injecting drugs, a new murmur, splinter haemorrhages and positive blood cultures", "a new murmur with persistent bacteraemia",
     "bacterial vegetations on a heart valve", "prolonged intravenous antibiotics guided by cultures"),
    ("bacterial meningitis", (16, 30), "headache, fever and a stiff neck",
     "photophobia, a non-blanching rash and cloudy cerebrospinal fluid", "neck stiffness with fever",
     "bacterial infection of the meninges, often Neisseria meningitidis", "immediate intravenous ceftriaxone"),
    ("ischaemic stroke", (60, 85), "sudden weakness of the right arm and face with slurred speech",
     "a right hemiparesis and expressive aphasia with a normal CT", "a sudden focal deficit with no bleed on CT",
     "occlusion of a cerebral artery causing infarction", "thrombolysis or thrombectomy within the time window"),
    ("subarachnoid haemorrhage", (35, 60), "a sudden thunderclap headache while lifting",
     "neck stiffness and blood in the basal cisterns on CT", "the worst headache of life reaching peak in seconds",
     "rupture of a berry aneurysm", "nimodipine and urgent aneurysm coiling"),
    ("migraine", (18, 40), "a throbbing one-sided headache with nausea",
     "photophobia, a visual aura and a normal examination", "recurrent attacks with aura and a normal examination",
     "neurovascular activation of the trigeminal system", "a triptan with an anti-emetic"),
    ("Parkinson disease", (60, 80), "a tremor of the hand at rest and slowness of movement",
     "cogwheel rigidity, bradykinesia and a shuffling gait", "an asymmetric resting tremor",
     "loss of dopaminergic neurons in the substantia nigra", "levodopa with a decarboxylase inhibitor"),
    ("myasthenia gravis", (20, 40), "drooping eyelids and double vision worse in the evening",
     "fatigable weakness and acetylcholine receptor antibodies", "weakness that worsens with use",
     "antibodies against the acetylcholine receptor at the neuromuscular junction", "pyridostigmine and immunosuppression"),
    ("urinary tract infection", (20, 45), "burning on passing urine and frequency",
     "suprapubic tenderness and a urine dip positive for nitrites", "dysuria with nitrites in the urine",
     "ascending infection of the bladder, most often by Escherichia coli", "a short course of nitrofurantoin"),
    ("acute pyelonephritis", (20, 45), "fever, rigors and loin pain",
     "renal angle tenderness and white cells in the urine", "loin pain with systemic features",
     "ascending infection reaching the renal parenchyma", "antibiotics such as a cephalosporin or ciprofloxacin"),
    ("nephrotic syndrome", (3, 10), "puffiness around the eyes and frothy urine",
     "heavy proteinuria, low albumin and high cholesterol", "proteinuria with oedema and hypoalbuminaemia",
     "podocyte injury letting protein leak through the glomerulus", "oral corticosteroids"),
    ("acute kidney injury", (60, 85), "passing little urine after days of diarrhoea",
     "dry mucous membranes and a creatinine three times baseline", "a rapid rise in creatinine after volume loss",
     "reduced renal perfusion", "intravenous fluids and stopping nephrotoxic drugs"),
    ("gout", (40, 70), "a hot swollen first toe joint that woke him at night",
     "an exquisitely tender joint and needle-shaped crystals on aspiration", "negatively birefringent crystals",
     "deposition of monosodium urate crystals", "an NSAID or colchicine, later allopurinol"),
    ("rheumatoid arthritis", (30, 60), "painful swollen small joints of both hands with morning stiffness",
     "symmetrical synovitis and anti-CCP antibodies", "symmetrical small joint synovitis lasting over an hour each morning",
     "autoimmune inflammation of the synovium", "methotrexate with a bridging steroid"),
    ("systemic lupus erythematosus", (20, 40), "joint pains, a facial rash and mouth ulcers",
     "a malar rash sparing the nasolabial folds and anti-dsDNA antibodies", "anti-dsDNA with multi-system features",
     "immune complex deposition from loss of self-tolerance", "hydroxychloroquine"),
    ("septic arthritis", (20, 70), "a single hot swollen knee and fever",
     "a painful restricted joint and turbid synovial fluid with many neutrophils", "a monoarthritis with fever",
     "bacterial infection of the joint space, often Staphylococcus aureus", "joint washout and intravenous antibiotics"),
    ("peptic ulcer disease", (30, 60), "burning epigastric pain relieved by eating",
     "epigastric tenderness and a positive urea breath test", "a positive test for Helicobacter pylori",
     "mucosal erosion by acid, often with Helicobacter pylori infection", "eradication therapy with a proton pump inhibitor and two antibiotics"),
    ("acute pancreatitis", (35, 65), "severe epigastric pain radiating to the back after heavy drinking",
     "vomiting and a serum lipase more than three times normal", "a lipase above three times the upper limit",
     "premature activation of pancreatic enzymes causing autodigestion", "fluids, analgesia and bowel rest"),
    ("coeliac disease", (15, 40), "bloating, diarrhoea and weight loss",
     "iron deficiency and positive tissue transglutaminase antibodies", "positive anti-tTG antibodies",
     "an immune reaction to gluten causing villous atrophy", "a strict gluten-free diet"),
    ("ulcerative colitis", (20, 40), "bloody diarrhoea for several weeks",
     "continuous colonic inflammation from the rectum on colonoscopy", "continuous mucosal disease starting in the rectum",
     "chronic mucosal inflammation of the colon", "mesalazine"),
    ("hepatitis A", (15, 35), "jaundice and nausea after travel",
     "a tender liver and very high transaminases", "acute hepatitis after travel with IgM antibodies",
     "viral infection of hepatocytes spread by the faecal-oral route", "supportive care"),
    ("tuberculosis", (20, 60), "a cough for two months with night sweats and weight loss",
     "an upper lobe cavity and acid-fast bacilli in sputum", "acid-fast bacilli with an upper lobe cavity",
     "infection with Mycobacterium tuberculosis", "rifampicin, isoniazid, pyrazinamide and ethambutol"),
    ("malaria", (20, 50), "cyclical fevers after returning from sub-Saharan Africa",
     "splenomegaly and parasites on a thick blood film", "parasites on the blood film after travel",
     "Plasmodium infection of red blood cells", "artemisinin-based combination therapy"),
    ("pre-eclampsia", (25, 38), "headache and swelling at 34 weeks of pregnancy",
     "a blood pressure of 160/110 mmHg and proteinuria", "new hypertension with proteinuria after 20 weeks",
     "abnormal placentation causing endothelial dysfunction", "labetalol, magnesium sulphate and planned delivery"),
    ("ectopic pregnancy", (20, 35), "lower abdominal pain and light vaginal bleeding after a missed period",
     "a positive pregnancy test and an empty uterus on ultrasound", "a positive test with no intrauterine pregnancy",
     "implantation of the embryo outside the uterine cavity, usually in the tube", "laparoscopic salpingectomy or methotrexate"),
    ("anaphylaxis", (10, 50), "lip swelling and wheeze minutes after eating peanuts",
     "hypotension, urticaria and stridor", "rapid multi-system reaction after an allergen",
     "IgE-mediated mast cell degranulation", "intramuscular adrenaline"),
]

AGE_NOUNS = [((0, 12), ("boy", "girl")), ((13, 17), ("teenage boy", "teenage girl")), ((18, 200), ("man", "woman"))]
PLACES = ["presents to the emergency department", "comes to the clinic", "is seen by her general practitioner",
          "is admitted to the medical ward", "attends the urgent care centre"]
TASKS = {
    "diagnosis": "What is the most likely diagnosis?",
    "management": "What is the most appropriate first-line management?",
    "mechanism": "What is the underlying mechanism of this condition?",
}
OPENERS = ["Okay, let's think about this.", "Alright, let me work through this.", "Hmm, let's see.",
           "Let me start with what stands out."]


def person(rng, ages):
    age = rng.randint(*ages)
    female = rng.random() < 0.5
    noun = next(nouns for span, nouns in AGE_NOUNS if span[0] <= age <= span[1])[female]
    return age, noun, "she" if female else "he"


def vignette(rng, cond, task):
    name, ages, complaint, findings, clue, mechanism, treatment = cond
    age, noun, pronoun = person(rng, ages)
    days = rng.choice(["a day", "two days", "three days", "a week", "several hours"])
    place = rng.choice(PLACES).replace("her", "his" if pronoun == "he" else "her")
    question = (f"A {age}-year-old {noun} {place} with {complaint} for {days}. "
                f"On examination and testing there is {findings}. {TASKS[task]}")
    reasoning = [
        rng.choice(OPENERS),
        f"We have a {age}-year-old with {complaint}.",
        f"The findings that matter are {findings}.",
        f"What really narrows it down is {clue}; that pattern fits {name} better than the alternatives.",
        f"I should check that the age fits too, and {name} is typical around {age}, so nothing argues against it.",
    ]
    if task == "diagnosis":
        reasoning.append(f"So the picture adds up to {name}.")
        answer = f"The most likely diagnosis is {name}, given {clue}."
    elif task == "management":
        reasoning += [f"Once I'm confident it's {name}, the question is what to do first.",
                      f"The standard first step is {treatment}."]
        answer = f"This is {name}; first-line management is {treatment}."
    else:
        reasoning += [f"Once I'm confident it's {name}, I need the mechanism behind it.",
                      f"It comes down to {mechanism}."]
        answer = f"This is {name}, caused by {mechanism}."
    return {"Question": question, "Complex_CoT": " ".join(reasoning), "Response": answer}


def mcq_row(rng, index):
    condition, *distractors = rng.sample(CONDITIONS, 4)
    question = vignette(rng, condition, "diagnosis")["Question"]
    options = [condition[0], *(d[0] for d in distractors)]
    rng.shuffle(options)
    gold = options.index(condition[0])
    if index % 2:
        return {"question": question, **dict(zip(("opa", "opb", "opc", "opd"), options)), "cop": gold}
    return {"question": question, "options": dict(zip("ABCD", options)), "answer_idx": "ABCD"[gold],
            "answer": condition[0]}


def rl_row(rng, index):
    """Even rows: a diagnosis MCQ (MedQA shape); odd rows: an open-ended question with its short answer."""
    if index % 2 == 0:
        return mcq_row(rng, 0)
    condition = rng.choice(CONDITIONS)
    task = rng.choice(["diagnosis", "management"])
    question = vignette(rng, condition, task)["Question"]
    return {"Open-ended Verifiable Question": question,
            "Ground-True Answer": condition[0] if task == "diagnosis" else condition[6]}


def write(path, rows):
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {path}")


def main():
    rng = random.Random(SEED)
    write(OUT, [vignette(rng, rng.choice(CONDITIONS), rng.choice(list(TASKS))) for _ in range(ROWS)])
    mcq_rng = random.Random(SEED + 1)
    write(MCQ_OUT, [mcq_row(mcq_rng, i) for i in range(MCQ_ROWS)])
    rl_rng = random.Random(SEED + 2)
    write(RL_OUT, [rl_row(rl_rng, i) for i in range(RL_ROWS)])


if __name__ == "__main__":
    main()
