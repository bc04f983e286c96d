from medical_r1.data import prompts
from medical_r1.data.tasks import medical_cot

ROW = {"Question": "A 30-year-old has a cough. Diagnosis?", "Complex_CoT": "Cough and fever. Think pneumonia.",
       "Response": "Community-acquired pneumonia."}


def test_training_text_ends_with_eos_and_extends_the_inference_prompt():
    row = medical_cot.format_row(medical_cot.validate(ROW), "<EOS>")
    assert row["text"].endswith("Community-acquired pneumonia.<EOS>")
    assert row["text"].startswith(row["prompt"])
    assert row["prompt"] == prompts.inference_prompt(ROW["Question"])
    assert row["prompt"].endswith("### Response:\n<think>\n")


def test_template_sections_in_order():
    text = prompts.training_text("Q?", "because", "A.", "</s>")
    order = ["Below is an instruction", "think carefully", "step-by-step chain of thoughts", "### Instruction:",
             "medical expert", "### Question:\nQ?", "### Response:\n<think>\nbecause\n</think>\nA.</s>"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions)


def test_split_generation():
    closed = prompts.split_generation("reasoning here\n</think>\n The answer. ")
    assert (closed.thinking, closed.answer, closed.closed_think) == ("reasoning here", "The answer.", True)
    unclosed = prompts.split_generation("still thinking")
    assert (unclosed.answer, unclosed.closed_think) == ("", False)
